//! The raw network output of a run on given inputs (`daed forward`): what a user compares with
//! PyTorch's to check a port.
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use daed_io::npz::{NpyArray, NpyData};

use crate::config::ModelKind;
use crate::daed::DaedNets;
use crate::nn::UNet;
use crate::train::Checkpoint;
use crate::{Error, Result};

/// The inputs: images, diffusion step indices and optional class labels.
pub struct ForwardInput {
    /// Images `[N, C, H, W]`, row-major.
    pub x: Vec<f32>,
    /// Their shape.
    pub shape: [usize; 4],
    /// One step index per image, as improved-diffusion's samplers hold them (before any
    /// rescaling).
    pub t: Vec<usize>,
    /// One class per image, for a class-conditional model.
    pub y: Option<Vec<usize>>,
}

fn ints(a: &NpyArray, key: &str, origin: &Path) -> Result<Vec<usize>> {
    let bad = |m: &str| Error::ckpt(origin, format!("`{key}`: {m}"));
    let NpyData::I64(v) = &a.data else {
        return Err(bad("must be int64"));
    };
    if a.shape.len() != 1 {
        return Err(bad(&format!("must be 1-D, has shape {:?}", a.shape)));
    }
    v.iter()
        .map(|&i| usize::try_from(i).map_err(|_| bad(&format!("{i} is negative"))))
        .collect()
}

impl ForwardInput {
    /// Reads `x` (float32 NCHW), `t` (int64) and optionally `y` (int64) from an `.npz`.
    pub fn read(path: &Path) -> Result<Self> {
        let arrays = daed_io::npz::read_npz(path)?;
        let x = arrays
            .get("x")
            .ok_or_else(|| Error::ckpt(path, "no array `x` (float32 images, N x C x H x W)"))?;
        let NpyData::F32(xv) = &x.data else {
            return Err(Error::ckpt(path, "`x` must be float32"));
        };
        let shape: [usize; 4] = x.shape.as_slice().try_into().map_err(|_| {
            Error::ckpt(
                path,
                format!("`x` must be N x C x H x W, has shape {:?}", x.shape),
            )
        })?;
        let t = arrays
            .get("t")
            .ok_or_else(|| Error::ckpt(path, "no array `t` (int64 step indices)"))?;
        let t = ints(t, "t", path)?;
        if t.len() != shape[0] {
            return Err(Error::ckpt(
                path,
                format!("`t` has {} entries for {} images", t.len(), shape[0]),
            ));
        }
        let y = match arrays.get("y") {
            Some(y) => {
                let y = ints(y, "y", path)?;
                if y.len() != shape[0] {
                    return Err(Error::ckpt(path, "`y` needs one label per image"));
                }
                Some(y)
            }
            None => None,
        };
        if let Some(k) = arrays
            .keys()
            .find(|k| !["x", "t", "y"].contains(&k.as_str()))
        {
            return Err(Error::ckpt(
                path,
                format!("unexpected array `{k}` (x, t, y are read)"),
            ));
        }
        Ok(Self {
            x: xv.clone(),
            shape,
            t,
            y,
        })
    }
}

/// Checks the inputs against a network: image shape, step range, labels.
fn check(
    input: &ForwardInput,
    image: [usize; 3],
    steps: usize,
    classes: Option<usize>,
    origin: &Path,
) -> Result<()> {
    let bad = |m: String| Err(Error::ckpt(origin, m));
    if input.shape[1..] != image {
        return bad(format!(
            "`x` holds images {:?} but the model takes {image:?}",
            &input.shape[1..]
        ));
    }
    if let Some(t) = input.t.iter().find(|&&t| t >= steps) {
        return bad(format!(
            "`t` = {t} is out of range: the process has steps 0..{}",
            steps - 1
        ));
    }
    match (classes, &input.y) {
        (Some(n), None) => bad(format!(
            "the model is class-conditional ({n} classes): give `y`"
        )),
        (None, Some(_)) => bad("`y` given but the model is not class-conditional".into()),
        (Some(n), Some(y)) if y.iter().any(|&c| c >= n) => {
            bad(format!("`y` holds a class outside 0..{}", n - 1))
        }
        _ => Ok(()),
    }
}

/// Batches of at most this many images per forward pass.
const CHUNK: usize = 16;

fn run_chunks(
    input: &ForwardInput,
    device: &Device,
    f: &dyn Fn(Tensor<4>, std::ops::Range<usize>) -> Tensor<4>,
) -> Result<(Vec<f32>, [usize; 4])> {
    let [n, c, h, w] = input.shape;
    let per = c * h * w;
    let mut out = Vec::new();
    let mut oc = 0;
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                input.x[start * per..end * per].to_vec(),
                [end - start, c, h, w],
            ),
            device,
        );
        let y = f(x, start..end);
        oc = y.dims()[1];
        out.extend(crate::tensor_io::to_vec(
            y.reshape([(end - start) * oc * h * w]),
        )?);
    }
    Ok((out, [n, oc, h, w]))
}

/// The network's raw output on `input`: `out` (N, C_out, H, W) for a DDGM; for a DAED run
/// `out` is the generator's and `out_dae` the DAE's (at its fixed time 0, mean channels).
/// The run's timestep rescaling is applied; `ema` picks the EMA weights.
pub fn forward(
    ck: &Checkpoint,
    input: &ForwardInput,
    ema: bool,
    device: &Device,
) -> Result<Vec<(String, NpyArray)>> {
    let image = ck.state.image_shape;
    let arr = |(v, s): (Vec<f32>, [usize; 4])| NpyArray::f32(&s, v);
    match ck.config.model {
        ModelKind::Ddgm => {
            let (net, d) = ck.load_model::<UNet>(ema, device)?;
            check(input, image, d.num_steps(), net.num_classes(), &ck.dir)?;
            let ts = d.model_timesteps_f32(&input.t);
            let out = run_chunks(input, device, &|x, r| {
                let y = input.y.as_ref().map(|y| &y[r.clone()]);
                net.forward_inference_labelled(x, &ts[r], y)
            })?;
            Ok(vec![("out".into(), arr(out))])
        }
        ModelKind::Daed => {
            let (nets, d) = ck.load_model::<DaedNets>(ema, device)?;
            check(
                input,
                image,
                d.num_steps(),
                nets.generator.num_classes(),
                &ck.dir,
            )?;
            let ts = d.model_timesteps_f32(&input.t);
            let out = run_chunks(input, device, &|x, r| {
                let y = input.y.as_ref().map(|y| &y[r.clone()]);
                nets.generator.forward_inference_labelled(x, &ts[r], y)
            })?;
            let dae = run_chunks(input, device, &|x, r| {
                nets.dae.forward_inference(x, &vec![0.0; r.len()])
            })?;
            Ok(vec![("out".into(), arr(out)), ("out_dae".into(), arr(dae))])
        }
    }
}
