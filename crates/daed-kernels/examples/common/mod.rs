//! What the probes share: timing.
use std::time::Instant;

/// Best of three timed runs of `f` after one warm-up, in seconds.
pub fn best_of_three<F: FnMut()>(mut f: F) -> f64 {
    f();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::MAX, f64::min)
}
