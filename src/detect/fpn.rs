//! Feature Pyramid Network (Lin et al., <https://arxiv.org/abs/1612.03144>) as in MMDetection's
//! Cascade R-CNN configs: 1x1 laterals, nearest-neighbour top-down sum, 3x3 outputs, and a
//! fifth level P6 that is P5 subsampled by 2 (a 1x1 max-pool with stride 2).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::nn::conv::{Conv, ConvSpec};

#[derive(Debug, Clone)]
pub struct Fpn {
    lateral: Vec<Conv>,
    output: Vec<Conv>,
}

impl Fpn {
    /// `vb` points at `neck.`; `in_channels` are C2..C5's widths.
    pub fn new(vb: VarBuilder, in_channels: &[usize], out_channels: usize) -> Result<Self> {
        let (vl, vo) = (vb.pp("lateral_convs"), vb.pp("fpn_convs"));
        let mut lateral = Vec::new();
        let mut output = Vec::new();
        for (i, &c) in in_channels.iter().enumerate() {
            lateral.push(Conv::with_bias(
                vl.pp(i).pp("conv"),
                ConvSpec::k1(c, out_channels, false),
            )?);
            output.push(Conv::with_bias(
                vo.pp(i).pp("conv"),
                ConvSpec::k3(out_channels, out_channels, 1, false),
            )?);
        }
        Ok(Self { lateral, output })
    }

    /// P2..P6 from C2..C5.
    pub fn forward(&self, feats: &[Tensor]) -> Result<Vec<Tensor>> {
        let mut lat = feats
            .iter()
            .zip(&self.lateral)
            .map(|(f, l)| l.forward(f))
            .collect::<Result<Vec<_>>>()?;
        for i in (1..lat.len()).rev() {
            let (_, _, h, w) = lat[i - 1].dims4()?;
            let up = lat[i].upsample_nearest2d(h, w)?;
            lat[i - 1] = (&lat[i - 1] + up)?;
        }
        let mut outs = lat
            .iter()
            .zip(&self.output)
            .map(|(l, c)| c.forward(l))
            .collect::<Result<Vec<_>>>()?;
        let p6 = outs[outs.len() - 1].max_pool2d_with_stride(1, 2)?;
        outs.push(p6);
        Ok(outs)
    }
}
