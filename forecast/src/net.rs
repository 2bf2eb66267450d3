//! The network: one GRU layer over the window, then a linear head giving
//! each horizon step's median and log-scale (Laplace). Gradients come from candle's
//! autograd; nothing here differentiates by hand.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::rnn::{GRU, GRUConfig, RNN as _};
use candle_nn::{Linear, Module as _, VarBuilder, VarMap};

use crate::data::FEATURES;
use crate::{Result, Spec};

/// The log-scale is held in this range: below it the loss explodes on one
/// unlucky window, above it the band says nothing.
const LOG_SCALE_MIN: f64 = -12.0;
const LOG_SCALE_MAX: f64 = 6.0;

pub struct Network {
    pub vars: VarMap,
    gru: GRU,
    head: Linear,
    window: usize,
    horizon: usize,
}

impl Network {
    pub fn new(spec: &Spec) -> Result<Self> {
        let vars = VarMap::new();
        let builder = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
        let gru = candle_nn::rnn::gru(
            FEATURES,
            spec.hidden,
            GRUConfig::default(),
            builder.pp("gru"),
        )?;
        let head = candle_nn::linear(spec.hidden, 2 * spec.horizon, builder.pp("head"))?;
        Ok(Self {
            vars,
            gru,
            head,
            window: spec.window,
            horizon: spec.horizon,
        })
    }

    pub fn load(spec: &Spec, path: &Path) -> Result<Self> {
        let mut net = Self::new(spec)?;
        net.vars.load(path)?;
        Ok(net)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        Ok(self.vars.save(path)?)
    }

    /// `inputs` is `batch x window x FEATURES`, row-major. Returns the means
    /// and the (clamped) log-scales, each `batch x horizon`.
    pub fn forward(&self, inputs: &Tensor) -> Result<(Tensor, Tensor)> {
        let states = self.gru.seq(inputs)?;
        let last = states
            .last()
            .ok_or_else(|| crate::Error::Invalid("an empty window".into()))?;
        let out = self.head.forward(last.h())?;
        let mean = out.narrow(1, 0, self.horizon)?;
        let log_scale = out
            .narrow(1, self.horizon, self.horizon)?
            .clamp(LOG_SCALE_MIN, LOG_SCALE_MAX)?;
        Ok((mean, log_scale))
    }

    pub fn tensor(&self, inputs: &[f32], batch: usize) -> Result<Tensor> {
        Ok(Tensor::from_slice(
            inputs,
            (batch, self.window, FEATURES),
            &Device::Cpu,
        )?)
    }

    /// Medians and log-scales as flat `batch x horizon` vectors.
    pub fn predict(&self, inputs: &[f32], batch: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let (mean, log_scale) = self.forward(&self.tensor(inputs, batch)?)?;
        Ok((
            mean.flatten_all()?.to_vec1()?,
            log_scale.flatten_all()?.to_vec1()?,
        ))
    }
}

/// The Laplace negative log-likelihood (without its constant), averaged:
/// `log b + |y - median| / b`.
pub fn laplace_nll(median: &Tensor, log_scale: &Tensor, target: &Tensor) -> Result<Tensor> {
    let distance = (target - median)?.abs()?;
    let per_step = (log_scale + (distance * log_scale.neg()?.exp()?)?)?;
    Ok(per_step.mean_all()?)
}
