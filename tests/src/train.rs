//! What the training commands (`train-detector`, `train-classifier`) share:
//! seeded initial weights and a progress bar.

use candle_core::Tensor;
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Candle draws initial weights from an unseeded generator: draw them again
/// from the seed (He-uniform weights of convolutions and linear layers,
/// zero biases), in name order, so that
/// the same seed gives the same weights.
pub fn seeded_init(vars: &VarMap, seed: u64) -> anyhow::Result<()> {
    let data = vars
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("the variables' lock is poisoned"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x1417);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if dims.len() >= 2 {
            let fan_in = dims[1..].iter().product::<usize>() as f32;
            let bound = (6.0 / fan_in).sqrt();
            (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
        } else {
            vec![0.0; n]
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

pub fn bar(n: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(n);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>26} [{bar:30}] {pos}/{len} {elapsed} ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}
