//! How well single-GPU pods land with jobnet's VF choice against the
//! first-free baseline: the figure `scripts/bench.sh` and the alignment
//! example report.

use jobnet_hw::topology::{PathClass, Rails, Topology};
use jobnet_hw::PciAddr;

use super::choice::{choose_vfs, first_free_vf, ChoiceError, FreeVfs, RailRequest};

/// How well single-GPU pods land, jobnet vs first-free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Alignment {
    /// Pods placed (one per GPU).
    pub pods: usize,
    /// Pods whose VF is PIX to their GPU with jobnet's choice.
    pub jobnet_pix: usize,
    /// Pods whose VF is PIX to their GPU with the first-free baseline.
    pub first_free_pix: usize,
}

impl Alignment {
    /// jobnet's PIX fraction (0..=1; 0 with no pods).
    pub fn jobnet_fraction(&self) -> f64 {
        fraction(self.jobnet_pix, self.pods)
    }

    /// The baseline's PIX fraction (0..=1; 0 with no pods).
    pub fn first_free_fraction(&self) -> f64 {
        fraction(self.first_free_pix, self.pods)
    }
}

fn fraction(n: usize, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

/// Places one single-GPU pod per GPU (GPU 0 first) with jobnet's choice
/// and with the first-free baseline, each from its own copy of `free`,
/// and counts the pods whose VF is PIX to their GPU.
pub fn single_gpu_alignment(
    topo: &Topology,
    rails: &Rails,
    free: &FreeVfs,
) -> Result<Alignment, ChoiceError> {
    let mut ours = free.clone();
    let mut base = free.clone();
    let mut out = Alignment {
        pods: 0,
        jobnet_pix: 0,
        first_free_pix: 0,
    };
    let is_pix = |gpu: PciAddr, vf: PciAddr| topo.path_class(gpu, vf) == Some(PathClass::Pix);
    for g in &topo.gpus {
        let pick = choose_vfs(topo, rails, &[g.pci], &ours, RailRequest::One)?;
        let b = first_free_vf(rails, &base).ok_or(ChoiceError::NoFreeVf)?;
        for p in &pick {
            ours.take(p.vf);
        }
        base.take(b.vf);
        out.pods += 1;
        out.jobnet_pix += usize::from(pick.iter().all(|p| is_pix(g.pci, p.vf)));
        out.first_free_pix += usize::from(is_pix(g.pci, b.vf));
    }
    Ok(out)
}
