//! A small, deterministic mutation fuzzer for file parsers, on stable Rust and without dependencies.
//!
//! [`fuzz`] runs a parser first on each seed of a corpus, then on mutants of them (bit flips,
//! interesting byte values, truncation, insertion and deletion, chunk duplication, huge u32/u64
//! fields in either byte order, splicing two seeds), catching panics. Mutant `i` depends only on the
//! corpus, the seed and `i`, so [`mutant`] rebuilds any input a report names. A parser that hangs
//! is not interrupted: the budget is checked between inputs.

use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, RefUnwindSafe};
use std::time::{Duration, Instant};

/// When to stop: after `time`, after `inputs` inputs, whichever comes first (neither: the seeds only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Budget {
    /// Wall-clock limit.
    pub time: Option<Duration>,
    /// Limit on the number of inputs run (seeds included).
    pub inputs: Option<u64>,
}

impl Budget {
    /// Runs for `secs` seconds.
    pub fn secs(secs: f64) -> Budget {
        Budget {
            time: Some(Duration::from_secs_f64(secs.max(0.0))),
            inputs: None,
        }
    }

    /// Runs `n` inputs.
    pub fn inputs(n: u64) -> Budget {
        Budget {
            time: None,
            inputs: Some(n),
        }
    }
}

/// One input that made the parser panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzPanic {
    /// Its iteration number: `mutant(corpus, seed, iteration)` rebuilds it.
    pub iteration: u64,
    /// The input itself.
    pub input: Vec<u8>,
    /// The panic's location and message.
    pub message: String,
}

/// What a [`fuzz`] run did.
#[derive(Clone, Debug, Default)]
pub struct FuzzReport {
    /// Inputs given to the parser (seeds included).
    pub inputs_run: u64,
    /// The panics, at most [`MAX_PANICS`] (the run stops there).
    pub panics: Vec<FuzzPanic>,
    /// The slowest input's iteration and time (to spot quadratic or huge-allocation cases).
    pub slowest: (u64, Duration),
}

/// A run stops after this many panics.
pub const MAX_PANICS: usize = 8;

/// splitmix64: tiny, fast and good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const BYTES: [u8; 6] = [0, 0xff, 0x7f, 0x80, 1, 0xfe];
const WORDS: [u64; 10] = [
    u64::MAX,
    i64::MAX as u64,
    1 << 63,
    1 << 32,
    0xffff_ffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    1 << 24,
    0,
];

/// Applies one random mutation to `d` (`corpus` supplies splice partners).
fn mutate_once(d: &mut Vec<u8>, corpus: &[Vec<u8>], r: &mut Rng) {
    let len = d.len();
    match r.below(10) {
        0 if len > 0 => d[r.below(len)] ^= 1 << r.below(8),
        1 if len > 0 => d[r.below(len)] = BYTES[r.below(BYTES.len())],
        2 if len > 0 => d[r.below(len)] = r.next() as u8,
        3 => d.truncate(r.below(len + 1)),
        4 => {
            let (at, n) = (r.below(len + 1), 1 + r.below(8));
            let fill: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
            d.splice(at..at, fill);
        }
        5 if len > 0 => {
            let at = r.below(len);
            d.drain(at..at + 1 + r.below((len - at).min(16)));
        }
        6 if len > 0 => {
            let a = r.below(len);
            let chunk = d[a..a + 1 + r.below((len - a).min(64))].to_vec();
            let at = r.below(len + 1);
            d.splice(at..at, chunk);
        }
        op @ (7 | 8) => {
            // A u32 or u64 field set to a huge value: the low `w` bytes of a word, LE or BE.
            let w = if op == 7 { 4 } else { 8 };
            if len >= w {
                let (at, v) = (r.below(len - w + 1), WORDS[r.below(WORDS.len())]);
                let (le, be) = (v.to_le_bytes(), v.to_be_bytes());
                let b = if r.below(2) == 0 {
                    &le[..w]
                } else {
                    &be[8 - w..]
                };
                d[at..at + w].copy_from_slice(b);
            }
        }
        9 if !corpus.is_empty() => {
            let other = &corpus[r.below(corpus.len())];
            d.truncate(r.below(len + 1));
            d.extend_from_slice(&other[r.below(other.len() + 1)..]);
        }
        _ => {}
    }
}

/// Input number `iteration` of a run: seed `iteration` itself while there are seeds, then a seed
/// chosen at random with one to four stacked mutations.
pub fn mutant(corpus: &[Vec<u8>], seed: u64, iteration: u64) -> Vec<u8> {
    if let Some(s) = corpus.get(iteration as usize) {
        return s.clone();
    }
    let mut r = Rng(seed ^ iteration.wrapping_mul(0xd6e8_feb8_6659_fd93));
    r.next();
    let mut d = corpus
        .get(r.below(corpus.len()))
        .cloned()
        .unwrap_or_default();
    for _ in 0..1 + r.below(4) {
        mutate_once(&mut d, corpus, &mut r);
    }
    d
}

thread_local! {
    /// True while this thread runs a parser under [`fuzz`]: its panics are recorded, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Wraps the panic hook (once per process) so that panics caught by [`fuzz`] are not printed.
fn install_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                LAST_PANIC.with(|m| *m.borrow_mut() = info.to_string());
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `parse` on the seeds of `corpus`, then on mutants of them, until `budget` is spent or
/// [`MAX_PANICS`] panics are found; `seed` picks the mutations.
pub fn fuzz(
    corpus: &[Vec<u8>],
    budget: Budget,
    seed: u64,
    parse: impl Fn(&[u8]) + RefUnwindSafe,
) -> FuzzReport {
    install_hook();
    let start = Instant::now();
    let mut report = FuzzReport::default();
    for i in 0.. {
        let over_time = budget.time.is_some_and(|t| start.elapsed() >= t);
        let over_count = budget.inputs.is_some_and(|n| i >= n);
        let seeds_done = i >= corpus.len() as u64 && budget == Budget::default();
        if over_time || over_count || seeds_done || report.panics.len() >= MAX_PANICS {
            break;
        }
        let input = mutant(corpus, seed, i);
        let t0 = Instant::now();
        QUIET.with(|q| q.set(true));
        let result = catch_unwind(|| parse(&input));
        QUIET.with(|q| q.set(false));
        let took = t0.elapsed();
        if took > report.slowest.1 {
            report.slowest = (i, took);
        }
        report.inputs_run += 1;
        if result.is_err() {
            let message = LAST_PANIC.with(|m| std::mem::take(&mut *m.borrow_mut()));
            report.panics.push(FuzzPanic {
                iteration: i,
                input,
                message,
            });
        }
    }
    report
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The test-suite form of [`fuzz`]: fuzzes `parse` on `seeds` for `DAED_FUZZ_SECS` seconds (default
/// 1; seed `DAED_FUZZ_SEED`, default 0xdaed) and fails, printing each panicking
/// input's hex prefix (the whole input is saved to a temporary file), if any input panics.
pub fn check(parser: &str, seeds: &[Vec<u8>], parse: impl Fn(&[u8]) + RefUnwindSafe) {
    let secs: f64 = std::env::var("DAED_FUZZ_SECS")
        .ok()
        .map(|s| {
            s.parse()
                .expect("DAED_FUZZ_SECS must be a number of seconds")
        })
        .unwrap_or(1.0);
    let seed: u64 = std::env::var("DAED_FUZZ_SEED")
        .ok()
        .map(|s| s.parse().expect("DAED_FUZZ_SEED must be an integer"))
        .unwrap_or(0xdaed);
    let r = fuzz(seeds, Budget::secs(secs), seed, parse);
    println!(
        "fuzz {parser}: {} inputs in {secs} s (seed {seed}, {} seeds), {} panics; slowest input #{} took {:.1} ms",
        r.inputs_run,
        seeds.len(),
        r.panics.len(),
        r.slowest.0,
        r.slowest.1.as_secs_f64() * 1e3
    );
    if r.panics.is_empty() {
        return;
    }
    for p in &r.panics {
        let file = std::env::temp_dir().join(format!("daed-fuzz-{parser}-{}.bin", p.iteration));
        let _ = std::fs::write(&file, &p.input);
        eprintln!(
            "PANIC at iteration {} ({} bytes, saved to {}): {}\n  hex prefix: {}",
            p.iteration,
            p.input.len(),
            file.display(),
            p.message,
            hex(&p.input[..p.input.len().min(96)])
        );
    }
    panic!("{parser}: {} inputs panicked (see above)", r.panics.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzzer must be able to fail: a toy parser that panics on `0x42` first with more than 3
    /// bytes is caught, starting from seeds that never do.
    #[test]
    fn finds_a_planted_panic() {
        let corpus = vec![b"hello world".to_vec(), b"abcd".to_vec()];
        let toy = |b: &[u8]| {
            if b.len() > 3 && b[0] == 0x42 {
                panic!("toy parser: 0x42 first");
            }
        };
        let report = fuzz(&corpus, Budget::inputs(1_000_000), 7, toy);
        let p = report.panics.first().expect("the planted panic is found");
        assert!(p.input.len() > 3 && p.input[0] == 0x42, "{:?}", p.input);
        assert!(
            p.message.contains("toy parser: 0x42 first"),
            "{}",
            p.message
        );
        assert_eq!(
            mutant(&corpus, 7, p.iteration),
            p.input,
            "mutant rebuilds it"
        );
        assert!(
            report.inputs_run < 1_000_000,
            "stops after {MAX_PANICS} panics"
        );
        assert_eq!(report.panics.len(), MAX_PANICS);
    }

    #[test]
    fn deterministic_seeds_first_and_budgets() {
        let corpus = vec![vec![1, 2, 3, 4, 5, 6, 7, 8, 9], Vec::new()];
        assert_eq!(mutant(&corpus, 3, 0), corpus[0]);
        assert_eq!(mutant(&corpus, 3, 1), corpus[1]);
        let a: Vec<_> = (0..200).map(|i| mutant(&corpus, 3, i)).collect();
        let b: Vec<_> = (0..200).map(|i| mutant(&corpus, 3, i)).collect();
        assert_eq!(a, b);
        assert!(a.iter().skip(2).any(|m| m != &corpus[0] && !m.is_empty()));
        assert_ne!(
            a,
            (0..200).map(|i| mutant(&corpus, 4, i)).collect::<Vec<_>>()
        );
        let r = fuzz(&corpus, Budget::inputs(500), 3, |_| {});
        assert_eq!((r.inputs_run, r.panics.len()), (500, 0));
        assert_eq!(fuzz(&corpus, Budget::default(), 3, |_| {}).inputs_run, 2);
        assert_eq!(fuzz(&[], Budget::inputs(50), 3, |_| {}).inputs_run, 50);
        let t = fuzz(&corpus, Budget::secs(0.05), 3, |_| {});
        assert!(t.inputs_run > 2);
    }
}
