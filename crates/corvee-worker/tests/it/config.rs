//! A misconfigured worker stops before saying anything, naming every
//! problem; a refused one reports the supervisor's reason and exits with an
//! error (checked under the real supervisor for both SDKs).

use corvee_supervisor::{Event, ProcessExit};
use corvee_worker::{JobError, Worker, WorkerError};

use crate::support::{for_both_sdks, sdk_pool, start_pool, Sdk};

fn noop(_: &corvee_worker::JobContext) -> Result<Option<Vec<u8>>, JobError> {
    Ok(None)
}

#[test]
fn a_misconfigured_worker_names_every_problem_and_sends_nothing() {
    let (ours, theirs) = corvee_proto::socket_pair().unwrap();
    let error = Worker::new("").window(0).max_frame_bytes(1000).run_on(theirs).unwrap_err();
    let WorkerError::Config { problem, .. } = &error else { panic!("{error}") };
    for expected in ["name is empty", "no handlers", "window is 0", "max_frame_bytes 1000"] {
        assert!(problem.contains(expected), "{problem}");
    }
    let mut byte = [0u8; 1];
    assert_eq!(rustix::io::read(&ours, &mut byte).unwrap(), 0, "nothing was sent; the socket is closed");

    let (_ours, theirs) = corvee_proto::socket_pair().unwrap();
    let error = Worker::new("twice").handler("a", noop).handler("a", noop).run_on(theirs).unwrap_err();
    assert!(error.to_string().contains("kind \"a\" has two handlers"), "{error}");
}

for_both_sdks!(a_refused_worker_exits_with_an_error_naming_the_reason);

async fn a_refused_worker_exits_with_an_error_naming_the_reason(sdk: Sdk) {
    let mut config = sdk_pool(sdk, "refused", &[]);
    config.kinds = vec!["a-kind-no-worker-runs".into()];
    let (pool, mut events) = start_pool(config);
    let index = events.wait_for("the worker's exit", |event| matches!(event, Event::WorkerExited { .. })).await;
    let Event::WorkerExited { reason, exit, .. } = &events.seen[index] else { unreachable!() };
    assert!(reason.contains("refused (unknown_kinds)"), "{reason}");
    assert_eq!(*exit, ProcessExit::Code(1), "a refused worker exits non-zero");
    crate::support::stop(pool, &mut events).await;
}
