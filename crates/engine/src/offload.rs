//! Where guests run: short ones on the runtime that serves the platform's I/O, CPU-bound ones
//! on the engine's own runtime.
//!
//! A tokio worker looks at its I/O driver and at the runtime's shared queue only between the
//! tasks it polls (every 61st poll, or when it runs out of work). A CPU-bound guest is polled
//! for a whole epoch tick (1–5 ms) at a time, and a worker handing slices from one such guest
//! to the next is never out of work: on the runtime that also serves HTTP, sockets that became
//! readable waited for tens of such polls. A light app beside one spinning guest — a paced
//! hello at ~2,000 req/s — saw p75 3.2 ms, p90 6.9 ms and p99 13.5 ms against 0.3/0.7 ms
//! alone, while its guests themselves ran in 0.2 ms at p99 and the kernel measured the request
//! bytes sitting in the socket for 8–16 ms (BENCHMARKS.md, fairness).
//!
//! So a guest starts on the runtime that accepted its request, which costs a hello world
//! nothing, and moves to the engine's CPU runtime the first time an epoch tick makes it
//! yield ([`CpuSlot::has_sliced`]): it has then run for a whole tick and is likely to run on.
//! An app whose invocations are CPU-heavy on average, or over its share of a contended
//! machine, starts there. The CPU runtime has a worker per core; the kernel shares the cores
//! between both runtimes' threads, and the I/O side, asleep most of the time, is woken at once
//! when a request arrives.

use std::future::Future;
use std::task::Poll;

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use crate::error::{EngineError, InvokeError};
use crate::fair::CpuSlot;

/// The engine's runtime for CPU-bound guests; shut down in the background when dropped (an
/// engine may be dropped inside another runtime, where blocking is not allowed).
pub(crate) struct CpuRuntime {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl CpuRuntime {
    /// A runtime with one worker per core, its threads named `nimbus-cpu` and run at `nice`
    /// (see `EngineConfig::cpu_nice`; where the kernel refuses, they keep Nimbus's priority).
    pub(crate) fn new(nice: i32) -> Result<Self, EngineError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("nimbus-cpu")
            .on_thread_start(move || {
                // Linux: `who = 0` is the calling thread, not the whole process.
                if nice != 0
                    && let Err(err) = rustix::process::setpriority_process(None, nice)
                {
                    tracing::warn!(error = %err, nice, "could not lower the CPU runtime's priority");
                }
            })
            .build()
            .map_err(|e| EngineError::Setup(format!("CPU runtime: {e}")))?;
        Ok(Self {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// A handle to spawn on.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for CpuRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs one invocation's guest (`run`, which owns its store) as a task: on `cpu` from the
/// start if `cpu_bound`, else on the current runtime until the guest first yields at a tick,
/// then on `cpu` (see the module docs). Aborting the returned task aborts the guest wherever
/// it runs.
pub(crate) fn spawn_guest<T, F>(
    cpu: &Handle,
    slot: CpuSlot,
    cpu_bound: bool,
    run: F,
) -> JoinHandle<Result<T, InvokeError>>
where
    T: Send + 'static,
    F: Future<Output = Result<T, InvokeError>> + Send + 'static,
{
    if cpu_bound {
        return cpu.spawn(run);
    }
    let cpu = cpu.clone();
    tokio::spawn(async move {
        let mut run = Box::pin(run);
        let here = std::future::poll_fn(|cx| match run.as_mut().poll(cx) {
            Poll::Ready(result) => Poll::Ready(Some(result)),
            // Moved between two polls: the guest's yield future is simply polled again there.
            Poll::Pending if slot.has_sliced() => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        if let Some(result) = here {
            return result;
        }
        let moved = cpu.spawn(run);
        // Aborts the moved guest's task when the task that waits for it is aborted or dropped.
        let _abort = AbortOnDrop(Some(moved.abort_handle()));
        match moved.await {
            Ok(result) => result,
            Err(join) => Err(InvokeError::Trap(format!("invocation task failed: {join}"))),
        }
    })
}

/// Aborts the invocation task when the caller goes away before the response head.
pub(crate) struct AbortOnDrop(pub(crate) Option<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::fair::FairShare;

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_owned()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_guest_moves_to_the_cpu_runtime_at_its_first_slice_and_stays() {
        let cpu = CpuRuntime::new(0).unwrap();
        let fair = FairShare::new(1, 10);
        let slot = CpuSlot::new(&fair.app("t", "a"));
        let guest = slot.clone();
        let task = spawn_guest(cpu.handle(), slot, false, async move {
            let before = thread_name();
            guest.next_slice().await;
            let after = thread_name();
            guest.next_slice().await;
            Ok((before, after, thread_name()))
        });
        let (before, after, later) = task.await.unwrap().unwrap();
        assert_ne!(before, "nimbus-cpu", "starts where it was spawned");
        assert_eq!(after, "nimbus-cpu");
        assert_eq!(later, "nimbus-cpu");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_short_guest_stays_and_a_cpu_bound_app_starts_on_the_cpu_runtime() {
        let cpu = CpuRuntime::new(0).unwrap();
        let fair = FairShare::new(1, 10);
        let share = fair.app("t", "a");
        let short = spawn_guest(cpu.handle(), CpuSlot::new(&share), false, async {
            tokio::task::yield_now().await;
            Ok(thread_name())
        });
        assert_ne!(short.await.unwrap().unwrap(), "nimbus-cpu");
        let bound = spawn_guest(cpu.handle(), CpuSlot::new(&share), true, async {
            Ok(thread_name())
        });
        assert_eq!(bound.await.unwrap().unwrap(), "nimbus-cpu");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn aborting_the_task_stops_a_moved_guest() {
        let cpu = CpuRuntime::new(0).unwrap();
        let fair = FairShare::new(1, 10);
        let slot = CpuSlot::new(&fair.app("t", "a"));
        let guest = slot.clone();
        let dropped = Arc::new(AtomicBool::new(false));
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let flag = Flag(dropped.clone());
        let (moved_tx, moved_rx) = tokio::sync::oneshot::channel();
        let task = spawn_guest(cpu.handle(), slot, false, async move {
            let _flag = flag;
            guest.next_slice().await;
            let _ = moved_tx.send(thread_name());
            std::future::pending::<Result<(), InvokeError>>().await
        });
        assert_eq!(moved_rx.await.unwrap(), "nimbus-cpu");
        task.abort();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !dropped.load(Ordering::SeqCst) {
            assert!(
                std::time::Instant::now() < deadline,
                "the moved guest still runs"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
