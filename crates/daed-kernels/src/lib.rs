//! daed's own CPU kernels for burn's `flex` backend, and its allocator.
//!
//! Each operation is a burn backend extension with a hand-written backward step, so the model
//! code (daed-core's `nn`) calls one function that runs this kernel on flex and burn's own
//! operations on every other backend (CUDA, libtorch): `conv` (im2col + GEMM, Winograd F(4x4,
//! 3x3) for 3x3 stride-1 convolutions, a direct convolution for layers with at most four
//! outputs; forward and all gradients), `norm` (GroupNorm
//! statistics; per-channel multiply-add + SiLU), `softmax` (last dimension), `attention` (fused
//! per block of queries, inference), `linear` (the attention's projections between feature maps
//! and token sequences, no transposing copies; bf16 in a bf16 scope), `vexp` (eight-lane `exp`
//! under the softmax and the SiLU),
//! `pool` (max / inside-mean, inference), `parallel` (the two halves of a batch on two threads,
//! inference), `optim` (AdamW and the EMA as fused parallel passes, the tensor version's bits).
//! `DAED_CONV=burn`, `DAED_NORM=burn`, `DAED_SOFTMAX=burn`, `DAED_ATTENTION=burn`,
//! `DAED_LINEAR=burn` and `DAED_POOL=burn` switch back to burn's operations, `DAED_WINOGRAD=0` to im2col. `alloc` keeps
//! large freed blocks for reuse.
pub mod alloc;
pub mod attention;
mod bf16;
pub mod conv;
#[cfg(feature = "flex")]
mod flex_ops;
mod lanes;
pub mod linear;
pub mod norm;
pub mod optim;
pub mod parallel;
pub mod pool;
pub mod precision;
pub mod softmax;
pub mod vexp;
pub mod zeros;

/// The environment variables that choose between kernels, and so can change the bits of a
/// result (same values, other rounding): what a resumable job records to refuse mixing them.
pub const SWITCHES: [&str; 8] = [
    "DAED_ATTENTION",
    "DAED_BF16",
    "DAED_CONV",
    "DAED_LINEAR",
    "DAED_NORM",
    "DAED_POOL",
    "DAED_SOFTMAX",
    "DAED_WINOGRAD",
];

/// The [`SWITCHES`] set in this process's environment, as `NAME=VALUE` in the list's order.
pub fn switches_set() -> Vec<String> {
    SWITCHES
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| format!("{k}={v}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::SWITCHES;

    /// The variables this crate reads that cannot change a result's bits.
    const NEUTRAL: [&str; 1] = ["DAED_SPLIT_BATCH"]; // the same bits, split or not (parallel.rs)

    fn sources(dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(std::fs::read_to_string(&p).unwrap());
            }
        }
    }

    /// Every `"DAED_..."` variable the kernels read is either a listed switch or known not to
    /// change the bits: a new switch left out of [`SWITCHES`] would let a resumed job mix bits.
    #[test]
    fn every_environment_switch_of_the_kernels_is_listed() {
        let mut texts = Vec::new();
        sources(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut texts,
        );
        let mut found = std::collections::BTreeSet::new();
        for t in &texts {
            for part in t.split("\"DAED_").skip(1) {
                let name: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                if !name.is_empty() && part[name.len()..].starts_with('"') {
                    found.insert(format!("DAED_{name}"));
                }
            }
        }
        assert!(found.len() >= SWITCHES.len(), "{found:?}");
        for name in &found {
            assert!(
                SWITCHES.contains(&name.as_str()) || NEUTRAL.contains(&name.as_str()),
                "{name} is read by the kernels but is not in SWITCHES"
            );
        }
    }
}
