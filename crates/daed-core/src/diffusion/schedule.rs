//! Noise schedules (improved-diffusion's `get_named_beta_schedule`) and respacing, in f64.
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The shape of the beta schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BetaSchedule {
    /// Betas linear from `beta_start` to `beta_end` (Ho et al.).
    Linear,
    /// alpha-bar from a squared cosine with offset s = 0.008 (Nichol & Dhariwal).
    Cosine,
}

impl BetaSchedule {
    /// Every schedule: the conformance suite (`tests/conformance.rs`) runs each. Adding one: a
    /// variant, its betas in [`ScheduleSpec::betas`], its name in `from_str`, and an entry here.
    pub const ALL: [BetaSchedule; 2] = [BetaSchedule::Linear, BetaSchedule::Cosine];
}

impl std::str::FromStr for BetaSchedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "linear" => Ok(Self::Linear),
            "cosine" => Ok(Self::Cosine),
            _ => Err(Error::Invalid(format!(
                "unknown schedule `{s}` (expected linear or cosine)"
            ))),
        }
    }
}

impl std::fmt::Display for BetaSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Linear => "linear",
            Self::Cosine => "cosine",
        })
    }
}

/// A complete schedule description: enough to rebuild the betas anywhere.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// `linear` or `cosine`.
    pub kind: BetaSchedule,
    /// Number of diffusion steps T.
    pub steps: usize,
    /// First beta of the linear schedule (before scaling).
    pub beta_start: f64,
    /// Last beta of the linear schedule (before scaling).
    pub beta_end: f64,
    /// Multiply the linear schedule's ends by 1000/T, as improved-diffusion does.
    pub scale_to_steps: bool,
}

impl Default for ScheduleSpec {
    fn default() -> Self {
        Self {
            kind: BetaSchedule::Linear,
            steps: 1000,
            beta_start: 1e-4,
            beta_end: 0.02,
            scale_to_steps: true,
        }
    }
}

impl ScheduleSpec {
    /// Checks the ranges; errors name the field.
    pub fn validate(&self) -> Result<()> {
        if self.steps < 1 {
            return Err(Error::Invalid("diffusion.steps must be at least 1".into()));
        }
        if self.kind == BetaSchedule::Linear {
            let (a, b) = self.linear_ends();
            if !(a > 0.0 && a < 1.0 && b > 0.0 && b < 1.0) {
                return Err(Error::Invalid(format!(
                    "diffusion.beta_start/beta_end must give betas in (0, 1); got {a} and {b} after scaling"
                )));
            }
        }
        Ok(())
    }

    fn linear_ends(&self) -> (f64, f64) {
        let scale = if self.scale_to_steps {
            1000.0 / self.steps as f64
        } else {
            1.0
        };
        (scale * self.beta_start, scale * self.beta_end)
    }

    /// The betas beta_1..beta_T (index 0 is the first step).
    pub fn betas(&self) -> Vec<f64> {
        let t = self.steps;
        match self.kind {
            BetaSchedule::Linear => {
                let (a, b) = self.linear_ends();
                if t == 1 {
                    return vec![a];
                }
                (0..t)
                    .map(|i| a + (b - a) * i as f64 / (t - 1) as f64)
                    .collect()
            }
            BetaSchedule::Cosine => cosine_betas(t, 0.008, 0.999),
        }
    }
}

/// Betas from alpha-bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2), clipped at `max_beta`.
pub fn cosine_betas(steps: usize, s: f64, max_beta: f64) -> Vec<f64> {
    let f = |t: f64| {
        (((t / steps as f64) + s) / (1.0 + s) * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    (0..steps)
        .map(|i| (1.0 - f(i as f64 + 1.0) / f(i as f64)).min(max_beta))
        .collect()
}

/// Cumulative products alpha-bar_t = prod_{s<=t} (1 - beta_s).
pub fn alphas_cumprod(betas: &[f64]) -> Vec<f64> {
    let mut acc = 1.0;
    betas
        .iter()
        .map(|b| {
            acc *= 1.0 - b;
            acc
        })
        .collect()
}

/// Which of the original steps a respaced process keeps (improved-diffusion's `space_timesteps`).
///
/// `spec` is `"ddimN"` (stride chosen so N steps are kept, starting at 0) or comma-separated
/// counts per equal section, e.g. `"50"` or `"10,15,20"`.
pub fn space_timesteps(num_timesteps: usize, spec: &str) -> Result<Vec<usize>> {
    let spec = spec.trim();
    if let Some(n) = spec.strip_prefix("ddim") {
        let desired: usize = n
            .parse()
            .map_err(|_| Error::Invalid(format!("bad respacing `{spec}`")))?;
        for stride in 1..num_timesteps.max(2) {
            let kept: Vec<usize> = (0..num_timesteps).step_by(stride).collect();
            if kept.len() == desired {
                return Ok(kept);
            }
        }
        return Err(Error::Invalid(format!(
            "cannot take exactly {desired} evenly strided steps from {num_timesteps}"
        )));
    }
    let counts: Vec<usize> = spec
        .split(',')
        .map(|c| c.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| Error::Invalid(format!("bad respacing `{spec}` (use N, N,M,.. or ddimN)")))?;
    let sections = counts.len();
    let size_per = num_timesteps / sections;
    let extra = num_timesteps % sections;
    let mut start = 0;
    let mut all = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        let size = size_per + usize::from(i < extra);
        if count > size || count == 0 {
            return Err(Error::Invalid(format!(
                "cannot take {count} steps from a section of {size} (respacing `{spec}` over {num_timesteps} steps)"
            )));
        }
        let frac_stride = if count <= 1 {
            1.0
        } else {
            (size - 1) as f64 / (count - 1) as f64
        };
        let mut cur = 0.0f64;
        for _ in 0..count {
            // Python's `round`, as the reference: halves to even (2.5 -> 2), not away from 0.
            all.push(start + cur.round_ties_even() as usize);
            cur += frac_stride;
        }
        start += size;
    }
    all.sort_unstable();
    all.dedup();
    Ok(all)
}

/// Betas of a process that keeps only `kept` steps of one with `alphas_cumprod`.
pub fn respaced_betas(alphas_cumprod: &[f64], kept: &[usize]) -> Vec<f64> {
    let mut last = 1.0;
    kept.iter()
        .map(|&i| {
            let b = 1.0 - alphas_cumprod[i] / last;
            last = alphas_cumprod[i];
            b
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_spot_values() {
        let s = ScheduleSpec {
            steps: 1000,
            ..Default::default()
        };
        let b = s.betas();
        assert_eq!(b.len(), 1000);
        assert!((b[0] - 1e-4).abs() < 1e-15);
        assert!((b[999] - 0.02).abs() < 1e-15);
        assert!((b[500] - (1e-4 + (0.02 - 1e-4) * 500.0 / 999.0)).abs() < 1e-15);
        // T = 500 scales both ends by 2.
        let b = ScheduleSpec {
            steps: 500,
            ..Default::default()
        }
        .betas();
        assert!((b[0] - 2e-4).abs() < 1e-15 && (b[499] - 0.04).abs() < 1e-15);
    }

    #[test]
    fn cosine_betas_bounded_and_alpha_bar_monotone() {
        let b = cosine_betas(1000, 0.008, 0.999);
        assert!(b.iter().all(|&x| x > 0.0 && x <= 0.999));
        assert!((b[999] - 0.999).abs() < 1e-12, "last beta is clipped");
        // Not collapsed to zero at the start: beta_1 from the closed form.
        let f = |t: f64| {
            ((t / 1000.0 + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                .cos()
                .powi(2)
        };
        assert!((b[0] - (1.0 - f(1.0) / f(0.0))).abs() < 1e-15);
        assert!(b[0] > 1e-5);
        let ab = alphas_cumprod(&b);
        assert!(ab.windows(2).all(|w| w[1] < w[0]));
        let ab = alphas_cumprod(&ScheduleSpec::default().betas());
        assert!(ab.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn respacing_matches_improved_diffusion() {
        assert_eq!(space_timesteps(10, "ddim5").unwrap(), vec![0, 2, 4, 6, 8]);
        assert_eq!(space_timesteps(300, "10,15,20").unwrap().len(), 45);
        let kept = space_timesteps(1000, "50").unwrap();
        assert_eq!(kept.len(), 50);
        assert_eq!((kept[0], kept[49]), (0, 999));
        assert!(space_timesteps(10, "11").is_err());
        assert!(space_timesteps(10, "abc").is_err());
        // Respaced alpha-bar equals the original at the kept steps.
        let ab = alphas_cumprod(&ScheduleSpec::default().betas());
        let nb = respaced_betas(&ab, &kept);
        let nab = alphas_cumprod(&nb);
        for (j, &i) in kept.iter().enumerate() {
            assert!((nab[j] - ab[i]).abs() < 1e-12);
        }
    }
}
