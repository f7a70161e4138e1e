//! Progress bars with ETA (indicatif) behind daed-core's observer.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use daed_core::train::Observer;
use indicatif::{ProgressBar, ProgressStyle};

/// A progress bar over `len` units.
pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// A `(done, total)` callback that drives `pb`, for the library's progress parameters.
pub fn tracker(pb: &ProgressBar) -> impl FnMut(usize, usize) + '_ {
    |k, total| {
        pb.set_length(total as u64);
        pb.set_position(k as u64);
    }
}

/// Draws training progress: step, loss (running mean), ETA; asks the trainer to stop when
/// `stop` is set (by a signal, [`stop_on_signals`]).
pub struct TrainBar {
    pb: Option<ProgressBar>,
    ema_loss: Option<f64>,
    stop: Arc<AtomicBool>,
}

impl TrainBar {
    /// A bar created at `start`.
    pub fn new() -> Self {
        Self {
            pb: None,
            ema_loss: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    /// This bar, asking the trainer to stop once `stop` is set.
    pub fn stopping_on(mut self, stop: Arc<AtomicBool>) -> Self {
        self.stop = stop;
        self
    }
}

/// A flag that SIGINT (Ctrl-C) and SIGTERM set; a second such signal while it is set ends the
/// process at once (exit status 1).
pub fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&flag))?;
        signal_hook::flag::register(sig, Arc::clone(&flag))?;
    }
    Ok(flag)
}

impl Observer for TrainBar {
    fn start(&mut self, step: u64, total: u64) {
        let pb = bar(total, "train");
        pb.set_position(step);
        pb.reset_eta();
        self.pb = Some(pb);
    }
    fn step(&mut self, step: u64, loss: f64) {
        let l = match self.ema_loss {
            Some(e) => 0.95 * e + 0.05 * loss,
            None => loss,
        };
        self.ema_loss = Some(l);
        if let Some(pb) = &self.pb {
            pb.set_position(step);
            pb.set_message(format!("loss {l:.4}"));
        }
    }
    fn message(&mut self, msg: &str) {
        match &self.pb {
            Some(pb) => pb.println(msg),
            None => eprintln!("{msg}"),
        }
    }
    fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

impl Drop for TrainBar {
    fn drop(&mut self) {
        if let Some(pb) = &self.pb {
            pb.finish();
        }
    }
}

/// One bar at a time for a sequence of named stages (a new name finishes the previous bar).
#[derive(Default)]
pub struct Stages {
    current: Option<(String, ProgressBar)>,
}

impl Stages {
    /// `done` of `total` units of the stage `what`.
    pub fn tick(&mut self, what: &str, done: usize, total: usize) {
        if self.current.as_ref().is_none_or(|(w, _)| w != what) {
            self.finish();
            self.current = Some((what.to_string(), bar(total as u64, what)));
        }
        if let Some((_, pb)) = &self.current {
            pb.set_length(total as u64);
            pb.set_position(done as u64);
        }
    }

    /// Finishes the current bar.
    pub fn finish(&mut self) {
        if let Some((_, pb)) = self.current.take() {
            pb.finish();
        }
    }
}

impl daed_core::analysis::switch::SwitchProgress for Stages {
    fn training(&mut self, beta1: f64, dir: &std::path::Path) -> Box<dyn Observer + '_> {
        self.finish();
        eprintln!("training the DAE for beta1 = {beta1} in {}", dir.display());
        Box::new(TrainBar::new())
    }

    fn stage(&mut self, what: &str, done: usize, total: usize) {
        self.tick(what, done, total);
    }
}

impl daed_core::metrics::curve::CurveProgress for Stages {
    fn stage(&mut self, what: &str, done: usize, total: usize) {
        self.tick(what, done, total);
    }

    fn message(&mut self, msg: &str) {
        self.finish();
        println!("{msg}");
    }
}

/// A study shows a line per stage and, inside it, one bar at a time with its ETA.
impl daed_core::study::StudyProgress for Stages {
    fn stage_start(&mut self, index: usize, total: usize, name: &str, title: &str) {
        eprintln!("[{index}/{total}] {name}: {title}");
    }
    fn stage_end(&mut self, name: &str, reused: bool, wall_s: f64, skipped: Option<&str>) {
        self.finish();
        match (reused, skipped) {
            (true, _) => eprintln!("      {name}: reused (inputs unchanged)"),
            (false, Some(why)) => eprintln!("      {name}: skipped: {why}"),
            (false, None) => eprintln!("      {name}: done in {wall_s:.1} s"),
        }
    }
    fn note(&mut self, msg: &str) {
        eprintln!("note: {msg}");
    }
    fn ddgm_training(&mut self) -> Box<dyn Observer + '_> {
        self.finish();
        Box::new(TrainBar::new())
    }
}
