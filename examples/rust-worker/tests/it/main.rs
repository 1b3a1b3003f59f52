//! The example workers under the real supervisor, as the daemon's demo will
//! run them: `corvee-example-worker` (this package's binary) and
//! `examples/python/worker.py`. Every test runs against both:
//! `TEST::rust` and `TEST::python`.

mod peace;
mod support;
