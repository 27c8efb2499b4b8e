//! [`ChildGuard`]: an outside process a test starts (a `sesame serve`, a `moto_server`) that stops whatever happens
//! to the test. Shared by the test crates of the workspace (`tests/it` and `kms-adapters/tests` include this file
//! with `#[path]`).
//!
//! - The child leads a process group of its own, so stopping it stops what it started too (grandchildren).
//! - Dropping the guard — at the end of the test, or while a panic unwinds — sends SIGTERM to the group, waits up to a
//!   grace period for the child to exit, then sends SIGKILL to the group and reaps the child.
//! - If the test process itself dies without unwinding (SIGKILL, SIGINT from Ctrl-C, `abort`), the kernel sends the
//!   child SIGKILL (Linux `PR_SET_PDEATHSIG`). That signal follows the thread that spawned the child, so the guard
//!   spawns it from a keeper thread of its own that lives exactly as long as the guard, whichever thread drops it.
//!
//! Waiting for the exit polls `try_wait` against a deadline; nothing sleeps for time to pass.
#![allow(dead_code)]

use std::io;
use std::process::{Child, Command, ExitStatus};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, kill_process_group};

/// How long a child has to exit after SIGTERM before it gets SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// A running child process, stopped (SIGTERM, grace, SIGKILL, to its whole process group) when dropped.
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
    grace: Duration,
    /// Dropping this lets the keeper thread end (after the child has been reaped).
    keeper: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl ChildGuard {
    /// Spawns `cmd` in a process group of its own; `what` names it in messages.
    pub fn spawn(cmd: Command, what: &str) -> io::Result<ChildGuard> {
        Self::spawn_with_grace(cmd, what, DEFAULT_GRACE)
    }

    /// [`ChildGuard::spawn`] with another grace period between SIGTERM and SIGKILL.
    pub fn spawn_with_grace(mut cmd: Command, what: &str, grace: Duration) -> io::Result<ChildGuard> {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0);
        #[cfg(target_os = "linux")]
        {
            let parent = rustix::process::getpid();
            #[allow(unsafe_code)]
            // SAFETY: the closure runs in the forked child before exec and only makes two system calls (prctl,
            // getppid), both async-signal-safe; it allocates nothing and takes no lock.
            unsafe {
                cmd.pre_exec(move || {
                    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                    // The parent may have died before the prctl: then nobody would ever send the signal.
                    if rustix::process::getppid() != Some(parent) {
                        return Err(io::Error::other("the test process is gone"));
                    }
                    Ok(())
                });
            }
        }
        let (spawned_tx, spawned_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let keeper = std::thread::Builder::new()
            .name(format!("child guard: {what}"))
            .spawn(move || {
                let _ = spawned_tx.send(cmd.spawn());
                // Returns when the guard drops the sender, after it has reaped the child.
                let _ = release_rx.recv();
            })?;
        match spawned_rx.recv().expect("the keeper thread sends the spawn result") {
            Ok(child) => Ok(ChildGuard {
                child: Some(child),
                what: what.to_owned(),
                grace,
                keeper: Some((release_tx, keeper)),
            }),
            Err(e) => {
                drop(release_tx);
                let _ = keeper.join();
                Err(e)
            }
        }
    }

    /// The child, for its pipes, its id or `try_wait`.
    pub fn child(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .expect("the child is there until the guard stops it")
    }

    /// The child's process id (also its process group id).
    pub fn id(&self) -> u32 {
        self.child
            .as_ref()
            .expect("the child is there until the guard stops it")
            .id()
    }

    /// SIGTERM to the group, up to the grace period for the child to exit, then SIGKILL; returns how it exited.
    pub fn stop(mut self) -> ExitStatus {
        self.finish(Signal::TERM).expect("stop the child")
    }

    /// SIGKILL to the group at once (a crash, as a test means it); returns how it exited (killed).
    pub fn kill(mut self) -> ExitStatus {
        self.finish(Signal::KILL).expect("kill the child")
    }

    fn finish(&mut self, first: Signal) -> io::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err(io::Error::other("already stopped"));
        };
        let group = Pid::from_child(&child);
        let result = (|| {
            if let Some(status) = child.try_wait()? {
                // Exited on its own; whatever it started may still run.
                let _ = kill_process_group(group, Signal::KILL);
                return Ok(status);
            }
            let _ = kill_process_group(group, first);
            let deadline = Instant::now() + self.grace;
            let status = loop {
                if let Some(status) = child.try_wait()? {
                    break status;
                }
                if Instant::now() >= deadline {
                    eprintln!(
                        "{}: still running {:?} after SIGTERM; sending SIGKILL",
                        self.what, self.grace
                    );
                    let _ = kill_process_group(group, Signal::KILL);
                    break child.wait()?;
                }
                std::thread::sleep(Duration::from_millis(10));
            };
            // The leader is gone; anything left in its group goes too. The group id cannot be reused while a member
            // lives, so this reaches nobody else.
            let _ = kill_process_group(group, Signal::KILL);
            Ok(status)
        })();
        if result.is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some((release, keeper)) = self.keeper.take() {
            drop(release);
            let _ = keeper.join();
        }
        result
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Err(e) = self.finish(Signal::TERM)
        {
            eprintln!("{}: could not be stopped: {e}", self.what);
        }
    }
}
