//! The threads that run qmgr's deliveries: each job blocks on one delivery
//! agent connection until the agent answers, so there are as many threads
//! as deliveries in flight; a thread that finished waits for the next job
//! instead of exiting (creating a thread per delivery cost qmgr a stack
//! mapping and its teardown per message), and exits after a minute
//! without work.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

type Job = Box<dyn FnOnce() + Send + 'static>;

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    ready: Condvar,
}

/// A growing pool of delivery threads.
#[derive(Default)]
pub struct Pool {
    shared: Arc<Shared>,
}

/// How long an idle thread waits for work before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(60);

impl Pool {
    pub fn new() -> Pool {
        Pool::default()
    }

    /// Run `job` on a pool thread: an idle one, or a new one when every
    /// thread is busy (a job never waits for another job to finish).
    pub fn run(&self, job: Job) {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.jobs.push_back(job);
        if st.jobs.len() > st.idle {
            drop(st);
            let shared = Arc::clone(&self.shared);
            std::thread::spawn(move || worker(&shared));
        } else {
            drop(st);
            self.shared.ready.notify_one();
        }
    }
}

fn worker(shared: &Shared) {
    let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = st.jobs.pop_front() {
            drop(st);
            job();
            st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st.idle += 1;
        let (guard, timeout) = shared
            .ready
            .wait_timeout(st, IDLE_EXIT)
            .unwrap_or_else(|e| e.into_inner());
        st = guard;
        st.idle -= 1;
        if timeout.timed_out() && st.jobs.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_concurrently_and_threads_are_reused() {
        let pool = Pool::new();
        // Ten jobs that all block until the tenth started: each needs its
        // own thread.
        let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
        let (tx, rx) = mpsc::channel();
        for _ in 0..10 {
            let gate = Arc::clone(&gate);
            let tx = tx.clone();
            pool.run(Box::new(move || {
                let (m, c) = &*gate;
                let mut n = m.lock().unwrap();
                *n += 1;
                c.notify_all();
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while *n < 10 && std::time::Instant::now() < deadline {
                    n = c.wait_timeout(n, Duration::from_millis(100)).unwrap().0;
                }
                tx.send(*n).unwrap();
            }));
        }
        for _ in 0..10 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap(), 10);
        }
        // The threads are now idle: more jobs reuse them.
        std::thread::sleep(Duration::from_millis(50));
        for i in 0..20 {
            let tx = tx.clone();
            pool.run(Box::new(move || tx.send(i).unwrap()));
        }
        let mut got: Vec<usize> = (0..20)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
    }
}
