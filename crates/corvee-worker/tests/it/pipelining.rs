//! Pipelining: the worker asks for a window, runs that many jobs at once
//! (each `rendezvous` job completes only when all of them ran at the same
//! time), and with the window kept full every result comes back matched to
//! its job.

use corvee_proto::Capabilities;
use corvee_supervisor::{Event, SubmitError};

use crate::support::{for_both_sdks, job, key, sdk_pool, start_pool, stop, Sdk};

for_both_sdks!(jobs_run_concurrently_up_to_the_window_and_every_pipelined_result_matches_its_job);

async fn jobs_run_concurrently_up_to_the_window_and_every_pipelined_result_matches_its_job(sdk: Sdk) {
    let (pool, mut events) = start_pool(sdk_pool(sdk, "pipelining", &[]));
    let Event::WorkerReady { window, capabilities, worker_name, .. } = events.ready().await else { unreachable!() };
    assert_eq!(*window, 4, "the worker asked for 4");
    assert_eq!(*capabilities, Capabilities::ALL, "{worker_name} offers fd payloads, checkpoints, peek, interrupt");

    for job_id in 1..=4 {
        pool.submit(job(job_id, "rendezvous", b"4")).unwrap();
    }
    for job_id in 1..=4 {
        assert_eq!(events.result_text(key(job_id, 1)).await, "met=4");
    }

    let total = 300u64;
    let payload = |job_id: u64| format!("payload of job {job_id}").into_bytes();
    let mut next = 100;
    while next < 100 + total {
        match pool.submit(job(next, "echo", &payload(next))) {
            Ok(()) => next += 1,
            // The window is full: an outcome will free a place.
            Err(SubmitError::NoCapacity { .. }) => {
                events.next().await;
            }
            Err(other) => panic!("{other}"),
        }
    }
    for job_id in 100..100 + total {
        assert_eq!(events.result_text(key(job_id, 1)).await.into_bytes(), payload(job_id));
    }
    stop(pool, &mut events).await;
}
