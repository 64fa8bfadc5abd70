//! Work done on a helper thread while the plugin's own thread waits in the
//! kernel's netns move.
//!
//! Moving a netdev between namespaces is one netlink request that the
//! kernel serves inside the sender's `sendmsg`, and most of it is waiting
//! for RCU grace periods (about 20 ms on the bench VM, almost all of it off
//! the CPU). A jobnetd commit or release, or a delegated IPAM plugin's DEL,
//! does not depend on the move and can take that time instead of its own.
//! The work starts only when the gate opens (just before the move, after
//! everything that decides whether it may run at all), never when it is
//! closed first, and is always joined before its outcome is used.

use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::{Scope, ScopedJoinHandle};

/// Work waiting on a helper thread for its gate.
pub struct Overlapped<'scope, T> {
    gate: Mutex<Option<mpsc::Sender<()>>>,
    handle: Mutex<Option<ScopedJoinHandle<'scope, Option<T>>>>,
}

impl<'scope, T: Send + 'scope> Overlapped<'scope, T> {
    /// Spawns the thread that will run `work` once [`Overlapped::start`] is
    /// called. The thread waits on a channel: dropping this value (an early
    /// return) ends it without running `work`.
    pub fn new<'env>(
        scope: &'scope Scope<'scope, 'env>,
        work: impl FnOnce() -> T + Send + 'scope,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let handle = scope.spawn(move || rx.recv().ok().map(|()| work()));
        Self {
            gate: Mutex::new(Some(tx)),
            handle: Mutex::new(Some(handle)),
        }
    }

    /// Lets the work run (once; later calls do nothing).
    pub fn start(&self) {
        let tx = self.gate.lock().ok().and_then(|mut g| g.take());
        if let Some(tx) = tx {
            // The thread is blocked in recv(): it cannot have gone.
            let _ = tx.send(());
        }
    }

    /// The work's outcome: `None` when it was never started (it is not
    /// started now), its thread panicked, or an earlier call took it.
    pub fn wait(&self) -> Option<T> {
        if let Ok(mut g) = self.gate.lock() {
            g.take();
        }
        let handle = self.handle.lock().ok().and_then(|mut h| h.take())?;
        handle.join().ok().flatten()
    }

    /// Starts the work if it has not started yet, and waits for it.
    pub fn finish(&self) -> Option<T> {
        self.start();
        self.wait()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_runs_only_after_start() {
        std::thread::scope(|s| {
            let o = Overlapped::new(s, || 7);
            o.start();
            o.start();
            assert_eq!(o.wait(), Some(7));
            assert_eq!(o.wait(), None);
            let never = Overlapped::new(s, || panic!("must not run"));
            assert_eq!(never.wait(), None::<()>);
            assert_eq!(Overlapped::new(s, || 8).finish(), Some(8));
            // Dropped without a start: the scope still ends.
            drop(Overlapped::new(s, || 9));
        });
    }
}
