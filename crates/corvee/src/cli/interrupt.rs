//! Ctrl-C while waiting: SIGINT is read on a thread (signal-hook's
//! self-pipe) and forwarded as a message with its count, so the waiting
//! loop decides what the first and second Ctrl-C mean.

use std::sync::mpsc::Sender;

use anyhow::Context as _;
use signal_hook::consts::SIGINT;
use signal_hook::iterator::Signals;

/// From now on, each SIGINT sends `message(n)` (n = 1, 2, ...) on `sender`
/// instead of ending the process.
pub fn forward_interrupts<T: Send + 'static>(
    sender: Sender<T>,
    message: impl Fn(u32) -> T + Send + 'static,
) -> anyhow::Result<()> {
    let mut signals = Signals::new([SIGINT]).context("cannot install the Ctrl-C handler")?;
    std::thread::Builder::new()
        .name("ctrl-c".to_string())
        .spawn(move || {
            let mut count = 0;
            for _signal in signals.forever() {
                count += 1;
                if sender.send(message(count)).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the Ctrl-C thread")?;
    Ok(())
}
