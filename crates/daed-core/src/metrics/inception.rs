//! The FID Inception-v3: the 2015-12-05 TensorFlow graph as pytorch-fid's `fid_inception_v3`
//! builds it, up to the 2048-d `pool_3` features, with the `mixed_6/conv` features of sFID and
//! (when the weights have them) the 1008-way logits of the Inception Score.
//!
//! Layout of the graph (torchvision name = TensorFlow name):
//! stem `Conv2d_1a..4a` = `conv..conv_4` with two 3x3/2 max pools; `Mixed_5b/5c/5d` = `mixed`,
//! `mixed_1`, `mixed_2` (block A); `Mixed_6a` = `mixed_3` (B); `Mixed_6b..6e` = `mixed_4..7` (C);
//! `Mixed_7a` = `mixed_8` (D); `Mixed_7b` = `mixed_9` (E, average pool) and `Mixed_7c` = `mixed_10`
//! (E, *max* pool in its pool branch: a quirk of this graph). The average pools in A, C and the
//! first E do not count the zero padding (`count_include_pad = false`, TensorFlow's `SAME`).
//! Batch norm (eps 1e-3) is folded into each conv at load time.
use std::path::Path;

use burn::tensor::activation::relu;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Device, Tensor, TensorData};

use super::weights::{fold, WeightSource};
use crate::nn::conv::conv2d;
use crate::nn::pool::{avg_pool_inside, max_pool, Window};
use crate::Result;

/// Input side of the network.
pub const INPUT_SIZE: usize = 299;
/// Dimension of the `pool_3` features (FID, precision/recall).
pub const POOL_DIM: usize = 2048;
/// Dimension of the sFID features: 7 channels x 17 x 17 of `mixed_6/conv`.
pub const SPATIAL_DIM: usize = 7 * 17 * 17;
/// Number of logits (1,008 ImageNet-2012 classes as in the 2015 graph).
pub const LOGITS_DIM: usize = 1008;

/// A conv with folded batch norm, followed by ReLU.
#[derive(Clone, Debug)]
pub struct ConvBn {
    weight: Tensor<4>,
    bias: Tensor<1>,
    stride: [usize; 2],
    padding: [usize; 2],
}

impl ConvBn {
    /// Loads layer `tv` (torchvision name) / `tf` (TensorFlow name) of shape
    /// `[cout, cin, kh, kw]` and folds its batch norm.
    fn load(
        src: &WeightSource,
        tv: &str,
        tf: &str,
        shape: [usize; 4],
        stride: usize,
        padding: [usize; 2],
        device: &Device,
    ) -> Result<Self> {
        let raw = src.conv_bn(tv, tf, shape)?;
        let (w, b) = fold(&raw);
        Ok(Self {
            weight: Tensor::from_data(TensorData::new(w, shape), device),
            bias: Tensor::from_data(TensorData::new(b, [shape[0]]), device),
            stride: [stride, stride],
            padding,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        relu(conv2d(
            x,
            self.weight.clone(),
            Some(self.bias.clone()),
            ConvOptions::new(self.stride, self.padding, [1, 1], 1),
        ))
    }
}

/// Loader state: the weight source, the device, and the block being built.
struct Ctx<'a> {
    src: &'a WeightSource,
    device: &'a Device,
    tv: &'a str,
    tf: &'a str,
}

impl Ctx<'_> {
    /// Layer `tv_leaf`/`tf_leaf` of the current block; `k` = [kh, kw]; padding keeps the size
    /// (`same`) unless `valid`.
    #[allow(clippy::too_many_arguments)]
    fn c(
        &self,
        tv_leaf: &str,
        tf_leaf: &str,
        cin: usize,
        cout: usize,
        k: [usize; 2],
        stride: usize,
        same: bool,
    ) -> Result<ConvBn> {
        let pad = if same { [k[0] / 2, k[1] / 2] } else { [0, 0] };
        let tv = join(self.tv, tv_leaf);
        let tf = join(self.tf, tf_leaf);
        ConvBn::load(
            self.src,
            &tv,
            &tf,
            [cout, cin, k[0], k[1]],
            stride,
            pad,
            self.device,
        )
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

fn avg3_same(x: Tensor<4>) -> Tensor<4> {
    avg_pool_inside(
        x,
        Window {
            kernel: 3,
            stride: 1,
            padding: 1,
        },
    )
}

fn max3_same(x: Tensor<4>) -> Tensor<4> {
    max_pool(
        x,
        Window {
            kernel: 3,
            stride: 1,
            padding: 1,
        },
    )
}

fn max3_s2(x: Tensor<4>) -> Tensor<4> {
    max_pool(
        x,
        Window {
            kernel: 3,
            stride: 2,
            padding: 0,
        },
    )
}

/// Block A (35x35): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1.
#[derive(Clone, Debug)]
struct BlockA {
    b1: ConvBn,
    b5: [ConvBn; 2],
    b3: [ConvBn; 3],
    pool: ConvBn,
}

impl BlockA {
    fn load(cx: &Ctx, cin: usize, pool_features: usize) -> Result<Self> {
        Ok(Self {
            b1: cx.c("branch1x1", "conv", cin, 64, [1, 1], 1, true)?,
            b5: [
                cx.c("branch5x5_1", "tower.conv", cin, 48, [1, 1], 1, true)?,
                cx.c("branch5x5_2", "tower.conv_1", 48, 64, [5, 5], 1, true)?,
            ],
            b3: [
                cx.c("branch3x3dbl_1", "tower_1.conv", cin, 64, [1, 1], 1, true)?,
                cx.c("branch3x3dbl_2", "tower_1.conv_1", 64, 96, [3, 3], 1, true)?,
                cx.c("branch3x3dbl_3", "tower_1.conv_2", 96, 96, [3, 3], 1, true)?,
            ],
            pool: cx.c(
                "branch_pool",
                "tower_2.conv",
                cin,
                pool_features,
                [1, 1],
                1,
                true,
            )?,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = self.b1.forward(x.clone());
        let b = chain(&self.b5, x.clone());
        let c = chain(&self.b3, x.clone());
        let d = self.pool.forward(avg3_same(x));
        Tensor::cat(vec![a, b, c, d], 1)
    }
}

/// Block B (35 -> 17): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2.
#[derive(Clone, Debug)]
struct BlockB {
    b3: ConvBn,
    b3dbl: [ConvBn; 3],
}

impl BlockB {
    fn load(cx: &Ctx) -> Result<Self> {
        Ok(Self {
            b3: cx.c("branch3x3", "conv", 288, 384, [3, 3], 2, false)?,
            b3dbl: [
                cx.c("branch3x3dbl_1", "tower.conv", 288, 64, [1, 1], 1, true)?,
                cx.c("branch3x3dbl_2", "tower.conv_1", 64, 96, [3, 3], 1, true)?,
                cx.c("branch3x3dbl_3", "tower.conv_2", 96, 96, [3, 3], 2, false)?,
            ],
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = self.b3.forward(x.clone());
        let b = chain(&self.b3dbl, x.clone());
        let c = max3_s2(x);
        Tensor::cat(vec![a, b, c], 1)
    }
}

/// Block C (17x17): 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1.
#[derive(Clone, Debug)]
struct BlockC {
    b1: ConvBn,
    b7: [ConvBn; 3],
    b7dbl: [ConvBn; 5],
    pool: ConvBn,
}

impl BlockC {
    fn load(cx: &Ctx, c7: usize) -> Result<Self> {
        let (h, v) = ([1, 7], [7, 1]);
        Ok(Self {
            b1: cx.c("branch1x1", "conv", 768, 192, [1, 1], 1, true)?,
            b7: [
                cx.c("branch7x7_1", "tower.conv", 768, c7, [1, 1], 1, true)?,
                cx.c("branch7x7_2", "tower.conv_1", c7, c7, h, 1, true)?,
                cx.c("branch7x7_3", "tower.conv_2", c7, 192, v, 1, true)?,
            ],
            b7dbl: [
                cx.c("branch7x7dbl_1", "tower_1.conv", 768, c7, [1, 1], 1, true)?,
                cx.c("branch7x7dbl_2", "tower_1.conv_1", c7, c7, v, 1, true)?,
                cx.c("branch7x7dbl_3", "tower_1.conv_2", c7, c7, h, 1, true)?,
                cx.c("branch7x7dbl_4", "tower_1.conv_3", c7, c7, v, 1, true)?,
                cx.c("branch7x7dbl_5", "tower_1.conv_4", c7, 192, h, 1, true)?,
            ],
            pool: cx.c("branch_pool", "tower_2.conv", 768, 192, [1, 1], 1, true)?,
        })
    }

    /// The block's output and its 1x1 branch (`mixed_N/conv`, used by sFID).
    fn forward(&self, x: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let a = self.b1.forward(x.clone());
        let b = chain(&self.b7, x.clone());
        let c = chain(&self.b7dbl, x.clone());
        let d = self.pool.forward(avg3_same(x));
        (Tensor::cat(vec![a.clone(), b, c, d], 1), a)
    }
}

/// Block D (17 -> 8): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2.
#[derive(Clone, Debug)]
struct BlockD {
    b3: [ConvBn; 2],
    b7x3: [ConvBn; 4],
}

impl BlockD {
    fn load(cx: &Ctx) -> Result<Self> {
        Ok(Self {
            b3: [
                cx.c("branch3x3_1", "tower.conv", 768, 192, [1, 1], 1, true)?,
                cx.c("branch3x3_2", "tower.conv_1", 192, 320, [3, 3], 2, false)?,
            ],
            b7x3: [
                cx.c("branch7x7x3_1", "tower_1.conv", 768, 192, [1, 1], 1, true)?,
                cx.c("branch7x7x3_2", "tower_1.conv_1", 192, 192, [1, 7], 1, true)?,
                cx.c("branch7x7x3_3", "tower_1.conv_2", 192, 192, [7, 1], 1, true)?,
                cx.c(
                    "branch7x7x3_4",
                    "tower_1.conv_3",
                    192,
                    192,
                    [3, 3],
                    2,
                    false,
                )?,
            ],
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = chain(&self.b3, x.clone());
        let b = chain(&self.b7x3, x.clone());
        let c = max3_s2(x);
        Tensor::cat(vec![a, b, c], 1)
    }
}

/// Block E (8x8): 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1, the pool being an
/// average (not counting padding) in `Mixed_7b` and a max in `Mixed_7c`.
#[derive(Clone, Debug)]
struct BlockE {
    b1: ConvBn,
    b3_1: ConvBn,
    b3_2a: ConvBn,
    b3_2b: ConvBn,
    bd_1: ConvBn,
    bd_2: ConvBn,
    bd_3a: ConvBn,
    bd_3b: ConvBn,
    pool: ConvBn,
    max_pool: bool,
}

impl BlockE {
    fn load(cx: &Ctx, cin: usize, max_pool: bool) -> Result<Self> {
        Ok(Self {
            b1: cx.c("branch1x1", "conv", cin, 320, [1, 1], 1, true)?,
            b3_1: cx.c("branch3x3_1", "tower_conv", cin, 384, [1, 1], 1, true)?,
            b3_2a: cx.c(
                "branch3x3_2a",
                "tower_mixed_conv",
                384,
                384,
                [1, 3],
                1,
                true,
            )?,
            b3_2b: cx.c(
                "branch3x3_2b",
                "tower_mixed_conv_1",
                384,
                384,
                [3, 1],
                1,
                true,
            )?,
            bd_1: cx.c("branch3x3dbl_1", "tower_1_conv", cin, 448, [1, 1], 1, true)?,
            bd_2: cx.c(
                "branch3x3dbl_2",
                "tower_1_conv_1",
                448,
                384,
                [3, 3],
                1,
                true,
            )?,
            bd_3a: cx.c(
                "branch3x3dbl_3a",
                "tower_1_mixed_conv",
                384,
                384,
                [1, 3],
                1,
                true,
            )?,
            bd_3b: cx.c(
                "branch3x3dbl_3b",
                "tower_1_mixed_conv_1",
                384,
                384,
                [3, 1],
                1,
                true,
            )?,
            pool: cx.c("branch_pool", "tower_2_conv", cin, 192, [1, 1], 1, true)?,
            max_pool,
        })
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let a = self.b1.forward(x.clone());
        let t = self.b3_1.forward(x.clone());
        let b1 = self.b3_2a.forward(t.clone());
        let b2 = self.b3_2b.forward(t);
        let t = self.bd_2.forward(self.bd_1.forward(x.clone()));
        let c1 = self.bd_3a.forward(t.clone());
        let c2 = self.bd_3b.forward(t);
        let p = if self.max_pool {
            max3_same(x)
        } else {
            avg3_same(x)
        };
        let d = self.pool.forward(p);
        Tensor::cat(vec![a, b1, b2, c1, c2, d], 1)
    }
}

fn chain(layers: &[ConvBn], x: Tensor<4>) -> Tensor<4> {
    layers.iter().fold(x, |h, l| l.forward(h))
}

/// What one forward pass returns.
#[derive(Clone, Debug)]
pub struct InceptionFeatures {
    /// `pool_3`: `[B, 2048]`.
    pub pool: Tensor<2>,
    /// `mixed_6/conv[..., :7]` flattened in TensorFlow's (H, W, C) order: `[B, 2023]`.
    pub spatial: Tensor<2>,
    /// Logits `pool_3 . W^T` (no bias, as the guided-diffusion evaluator's softmax graph):
    /// `[B, 1008]`, when the weights have the logits layer.
    pub logits: Option<Tensor<2>>,
}

impl InceptionFeatures {
    /// The features of two batches, one after the other.
    pub fn cat(a: Self, b: Self) -> Self {
        use crate::nn::parallel::cat_batches;
        Self {
            pool: cat_batches(a.pool, b.pool),
            spatial: cat_batches(a.spatial, b.spatial),
            logits: match (a.logits, b.logits) {
                (Some(x), Some(y)) => Some(cat_batches(x, y)),
                _ => None,
            },
        }
    }
}

/// The FID Inception-v3 with folded batch norm.
#[derive(Clone, Debug)]
pub struct FidInception {
    stem: [ConvBn; 5],
    mixed_5: [BlockA; 3],
    mixed_6a: BlockB,
    mixed_6: [BlockC; 4],
    mixed_7a: BlockD,
    mixed_7: [BlockE; 2],
    /// `(weight [1008, 2048] as [2048, 1008], bias [1008])`.
    fc: Option<(Tensor<2>, Tensor<1>)>,
    device: Device,
}

impl FidInception {
    /// Loads the network from a weight file (see [`WeightSource::open`]).
    pub fn open(path: &Path, device: &Device) -> Result<Self> {
        Self::load(&WeightSource::open(path)?, device)
    }

    /// Builds the network from a weight source, checking every tensor's shape.
    pub fn load(src: &WeightSource, device: &Device) -> Result<Self> {
        let cx = |tv: &'static str, tf: &'static str| Ctx {
            src,
            device,
            tv,
            tf,
        };
        let s = cx("", "");
        let stem = [
            s.c("Conv2d_1a_3x3", "conv", 3, 32, [3, 3], 2, false)?,
            s.c("Conv2d_2a_3x3", "conv_1", 32, 32, [3, 3], 1, false)?,
            s.c("Conv2d_2b_3x3", "conv_2", 32, 64, [3, 3], 1, true)?,
            s.c("Conv2d_3b_1x1", "conv_3", 64, 80, [1, 1], 1, false)?,
            s.c("Conv2d_4a_3x3", "conv_4", 80, 192, [3, 3], 1, false)?,
        ];
        let mixed_5 = [
            BlockA::load(&cx("Mixed_5b", "mixed"), 192, 32)?,
            BlockA::load(&cx("Mixed_5c", "mixed_1"), 256, 64)?,
            BlockA::load(&cx("Mixed_5d", "mixed_2"), 288, 64)?,
        ];
        let mixed_6a = BlockB::load(&cx("Mixed_6a", "mixed_3"))?;
        let mixed_6 = [
            BlockC::load(&cx("Mixed_6b", "mixed_4"), 128)?,
            BlockC::load(&cx("Mixed_6c", "mixed_5"), 160)?,
            BlockC::load(&cx("Mixed_6d", "mixed_6"), 160)?,
            BlockC::load(&cx("Mixed_6e", "mixed_7"), 192)?,
        ];
        let mixed_7a = BlockD::load(&cx("Mixed_7a", "mixed_8"))?;
        let mixed_7 = [
            BlockE::load(&cx("Mixed_7b", "mixed_9"), 1280, false)?,
            BlockE::load(&cx("Mixed_7c", "mixed_10"), 2048, true)?,
        ];
        let fc = src.logits()?.map(|(w, b)| {
            let w: Tensor<2> =
                Tensor::from_data(TensorData::new(w, [LOGITS_DIM, POOL_DIM]), device);
            let b: Tensor<1> = Tensor::from_data(TensorData::new(b, [LOGITS_DIM]), device);
            (w.transpose(), b)
        });
        Ok(Self {
            stem,
            mixed_5,
            mixed_6a,
            mixed_6,
            mixed_7a,
            mixed_7,
            fc,
            device: device.clone(),
        })
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the weights include the 1008-way logits layer (needed for the Inception Score).
    pub fn has_logits(&self) -> bool {
        self.fc.is_some()
    }

    /// [`forward`](Self::forward) for feature extraction: on flex the two halves of the batch
    /// run on two threads (see [`crate::nn::parallel`]); the result is the same.
    pub fn forward_inference(&self, x: Tensor<4>) -> InceptionFeatures {
        crate::nn::parallel::on_halves(x, |x, _| self.forward(x), InceptionFeatures::cat)
    }

    /// Runs the network on `[B, 3, 299, 299]` inputs already scaled to [-1, 1].
    pub fn forward(&self, x: Tensor<4>) -> InceptionFeatures {
        let mut x = self.stem[0].forward(x);
        x = self.stem[1].forward(x);
        x = self.stem[2].forward(x);
        x = max3_s2(x);
        x = self.stem[3].forward(x);
        x = self.stem[4].forward(x);
        x = max3_s2(x);
        for b in &self.mixed_5 {
            x = b.forward(x);
        }
        x = self.mixed_6a.forward(x);
        let mut spatial = None;
        for (i, b) in self.mixed_6.iter().enumerate() {
            let (out, branch1x1) = b.forward(x);
            if i == 2 {
                // TensorFlow's `mixed_6/conv` = torchvision's Mixed_6d.branch1x1 (after ReLU).
                spatial = Some(branch1x1);
            }
            x = out;
        }
        x = self.mixed_7a.forward(x);
        for b in &self.mixed_7 {
            x = b.forward(x);
        }
        let [bsz, c, _, _] = x.dims();
        let pool = x.mean_dim(3).mean_dim(2).reshape([bsz, c]);
        let spatial = spatial
            .expect("Mixed_6d runs")
            .narrow(1, 0, 7)
            .permute([0, 2, 3, 1])
            .reshape([bsz, SPATIAL_DIM]);
        let logits = self
            .fc
            .as_ref()
            .map(|(w, _)| pool.clone().matmul(w.clone()));
        InceptionFeatures {
            pool,
            spatial,
            logits,
        }
    }

    /// Logits with the layer's bias added (torchvision's `fc`), for callers that want them.
    pub fn logits_with_bias(&self, pool: Tensor<2>) -> Option<Tensor<2>> {
        self.fc
            .as_ref()
            .map(|(w, b)| pool.matmul(w.clone()) + b.clone().unsqueeze::<2>())
    }
}
