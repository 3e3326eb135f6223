//! The answering pool: where the work of answering a question runs.
//!
//! Actors live on one thread each (an arbiter): every chat session and
//! persona actor of this node shares the registry's. Answering a question
//! (retrieval, the model's stream, citations, storing the answer) is the
//! heavy part of a classroom's traffic, so the actors hand it to this pool,
//! a multi-threaded tokio runtime with one worker per core, and only await
//! its result: a node answers with every core, and an actor's thread stays
//! free to acknowledge the next question at once.
//!
//! Its threads run at a lower priority than the rest of the process
//! (`chat.answering_nice`, [`set_answering_nice`]; Linux): on a busy node
//! the kernel then gives the threads that store and acknowledge questions
//! and move frames the core first, and answering (which takes
//! milliseconds per question where an acknowledgement takes microseconds)
//! uses what is left, which is nearly all of it.
//!
//! One pool per process, started on first use and never stopped (a runtime
//! must not be dropped from inside another; its threads idle when there is
//! nothing to answer). Futures sent here must be `Send` and must not use
//! actix's thread-local spawning.

use std::future::Future;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;
use tracing::Instrument;

static POOL: OnceLock<Runtime> = OnceLock::new();

/// How much nicer than the process the answering threads are: 5 until
/// start-up sets `chat.answering_nice` (whose default is the same).
static NICE: AtomicI32 = AtomicI32::new(5);

/// Sets how much nicer than the process the answering and compute threads
/// run (0–19). Threads started before keep theirs: call at start-up,
/// before [`start_compute_pool`] and the first answer.
pub fn set_answering_nice(nice: i32) {
    NICE.store(nice.clamp(0, 19), Ordering::Relaxed);
}

/// How much nicer than the process the answering threads run.
pub fn answering_nice() -> i32 {
    NICE.load(Ordering::Relaxed)
}

fn pool() -> &'static Handle {
    POOL.get_or_init(|| {
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("bwenge-answer")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .expect("starting the answering pool (threads) failed")
    })
    .handle()
}

/// Runs `work` on the answering pool, inside the caller's tracing span (so
/// its logs carry the request's and session's ids).
pub fn spawn<F>(work: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    pool().spawn(work.instrument(tracing::Span::current()))
}

/// Runs blocking `work` (parsing, hashing, Tantivy, HNSW) on tokio's
/// blocking pool, inside the caller's tracing span.
pub fn blocking<F, R>(work: F) -> JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
}

/// How rayon's global pool is built ([`start_compute_pool`]): named
/// threads at the answering pool's priority.
fn compute_pool_builder() -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("bwenge-compute-{i}"))
        .start_handler(|_| lower_priority())
}

/// Builds rayon's global pool, where the embedding model's passes run in
/// parallel (a question's, in the question line, and a document's), with
/// its threads at the answering pool's priority: otherwise they are
/// created on first use by whatever thread used rayon first and keep its
/// priority, so a question's embedding ran at the priority of the threads
/// that store and acknowledge questions. Call before anything uses rayon;
/// a pool already built is left as it is (and said so at debug level).
pub fn start_compute_pool() {
    if let Err(e) = compute_pool_builder().build_global() {
        tracing::debug!(error = %e, "rayon's global pool was already built");
    }
}

/// Sets the calling thread's scheduling priority to the process's (its
/// main thread's) plus [`answering_nice`] (Linux gives each thread its own
/// nice value). Relative to the process, not to the calling thread: a
/// thread inherits its creator's nice value, and the pool's blocking
/// threads are created by its workers, which would otherwise lower them
/// twice. Best effort: a failure leaves the thread as it was.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread, no memory shared.
    unsafe {
        let tid = libc::gettid() as libc::id_t;
        let process = libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t);
        libc::setpriority(
            libc::PRIO_PROCESS,
            tid,
            (process + answering_nice()).min(19),
        );
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The calling thread's nice value.
    fn nice() -> i32 {
        // SAFETY: a plain system call on the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    fn process_nice() -> i32 {
        // SAFETY: a plain system call.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::getpid() as libc::id_t) }
    }

    #[tokio::test]
    async fn answering_threads_and_their_blocking_threads_are_lowered_once() {
        let want = (process_nice() + super::answering_nice()).min(19);
        let (worker, blocking) = super::spawn(async {
            let worker = nice();
            // Blocking work started from the pool runs on threads its
            // workers create (and that inherit their nice value).
            let blocking = tokio::task::spawn_blocking(nice)
                .await
                .expect("blocking task");
            (worker, blocking)
        })
        .await
        .expect("answering task");
        assert_eq!(worker, want, "an answering worker");
        assert_eq!(blocking, want, "a blocking thread of the answering pool");
    }

    #[test]
    fn the_compute_pool_runs_at_the_answering_priority() {
        let want = (process_nice() + super::answering_nice()).min(19);
        // The global pool's configuration, built as a pool of its own (the
        // global one can be built once per process).
        let pool = super::compute_pool_builder()
            .num_threads(2)
            .build()
            .expect("building the pool");
        let seen = pool.broadcast(|_| (nice(), std::thread::current().name().map(str::to_owned)));
        for (n, name) in seen {
            assert_eq!(n, want, "thread {name:?}");
            assert!(name.is_some_and(|n| n.starts_with("bwenge-compute-")));
        }
    }
}
