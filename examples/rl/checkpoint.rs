//! The policy in `kt::store`: its weights as a safetensors tensor set (one tensor per
//! layer, so a candle or PyTorch program could read them), and checkpoints that add Adam's
//! moments and the step to resume training at.

use kt::prelude::*;
use kt::store::{Entry, SafeTensors, TensorSet};

use super::policy::{Adam, PARAMETERS, TENSORS};

/// The weights as a tensor set: the policy's tensors by name and shape.
pub fn weights(params: &[f32]) -> Result<TensorSet, Error> {
    let mut set = TensorSet::new().metadata("task", "reverse digits");
    let mut at = 0;
    for (name, shape) in TENSORS {
        let len: usize = shape.iter().product();
        let tensor = params
            .get(at..at + len)
            .ok_or_else(|| decode("the weights", format!("{} parameters", params.len())))?;
        set = set.add_f32(name, shape, tensor)?;
        at += len;
    }
    Ok(set)
}

/// The policy's flat parameters out of a version of the weights (or of a checkpoint).
pub fn read_weights(entry: &Entry) -> Result<Vec<f32>, Error> {
    weights_of(entry, &entry.tensors()?)
}

fn weights_of(entry: &Entry, tensors: &SafeTensors<'_>) -> Result<Vec<f32>, Error> {
    let mut params = Vec::with_capacity(PARAMETERS);
    for (name, _) in TENSORS {
        params.extend(read_f32(entry, tensors, name)?);
    }
    match params.len() == PARAMETERS {
        true => Ok(params),
        false => Err(decode(
            "the weights",
            format!(
                "{} parameters, where the policy has {PARAMETERS}",
                params.len()
            ),
        )),
    }
}

/// A training state: the weights, the optimizer and the steps taken.
pub struct Checkpoint {
    /// The policy's parameters.
    pub params: Vec<f32>,
    /// Adam, with its moments.
    pub adam: Adam,
    /// Optimizer steps taken.
    pub step: u64,
}

/// Puts `params` and `adam`'s moments after `step` steps as the newest version of `key`
/// (the one before it goes); answers with the version.
pub async fn save(key: &str, params: &[f32], adam: &Adam, step: u64) -> Result<u64, Error> {
    let (m, v, _) = adam.state();
    let set = weights(params)?
        .add_f32("adam.m", &[PARAMETERS], m)?
        .add_f32("adam.v", &[PARAMETERS], v)?;
    let version = kt::store::put_tensors(key, set)
        .meta("step", step)
        .keep_last(1)
        .await?;
    Ok(version.0)
}

/// The newest checkpoint under `key`, its optimizer set to learning rate `lr`.
pub async fn load(key: &str, lr: f32) -> Result<Checkpoint, Error> {
    let entry = kt::store::get(key).await?;
    let step = entry
        .info()
        .meta("step")
        .and_then(|step| step.parse().ok())
        .ok_or_else(|| decode(key, "no step in its metadata".into()))?;
    let tensors = entry.tensors()?;
    let (m, v) = (
        read_f32(&entry, &tensors, "adam.m")?,
        read_f32(&entry, &tensors, "adam.v")?,
    );
    if m.len() != PARAMETERS || v.len() != PARAMETERS {
        return Err(decode(
            key,
            format!("optimizer moments of {} and {} values", m.len(), v.len()),
        ));
    }
    Ok(Checkpoint {
        params: weights_of(&entry, &tensors)?,
        adam: Adam::resume(lr, m, v, step as i32),
        step,
    })
}

/// Tensor `name` of `entry` (whose tensors are `tensors`), as little-endian `f32`s.
fn read_f32(entry: &Entry, tensors: &SafeTensors<'_>, name: &str) -> Result<Vec<f32>, Error> {
    let view = tensors.tensor(name).map_err(|e| {
        decode(
            &format!("tensor '{name}' of {}", entry.info().key),
            e.to_string(),
        )
    })?;
    let (floats, _) = view.data().as_chunks::<4>();
    Ok(floats.iter().map(|b| f32::from_le_bytes(*b)).collect())
}

fn decode(what: &str, message: String) -> Error {
    Error::Decode {
        what: what.to_string(),
        message,
    }
}
