//! Integration tests of corvee-server: real daemons started in-process on
//! temporary directories, driven over their Unix socket.

mod api;
mod lifecycle;
mod support;
