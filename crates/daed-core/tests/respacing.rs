//! Respacing agrees with improved-diffusion's own `space_timesteps` (fixture made from the
//! reference code by `tests/fixtures/make_respacing_fixture.py`), including the specs where
//! Python's `round` (half to even) and rounding half away from zero differ ("7,3,5", "55", "75",
//! "25,25,25,25" at T = 4000).
use daed_core::diffusion::schedule::space_timesteps;

#[test]
fn respacing_matches_improved_diffusion() {
    let text = include_str!("fixtures/respacing.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
    assert!(cases.len() >= 30);
    for c in &cases {
        let steps = c["steps"].as_u64().unwrap() as usize;
        let spec = c["spec"].as_str().unwrap();
        let want: Vec<usize> = c["kept"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let got = space_timesteps(steps, spec).unwrap();
        assert_eq!(got, want, "T = {steps}, `{spec}`");
    }
}
