//! jobnetd's VF choice and the first-free baseline on fake sysfs trees of
//! real-looking GPU servers (`tests/src/topo_layouts.rs`).

use jobnet_daemon::topology::alignment::single_gpu_alignment;
use jobnet_daemon::topology::choice::{
    choose_vfs, first_free_vf, ChoiceError, FreeVfs, RailRequest,
};
use jobnet_hw::topology::{PathClass, Rails, Topology};
use jobnet_hw::{PciAddr, SysfsRoot};
use jobnet_tests::topo_layouts::{eight_by_eight, uneven, write_layout, Layout};

use PathClass::{Phb as PHB, Pix as PIX, Sys as SYS};

/// A layout written to a temp dir (removed on drop) and discovered, its
/// rails numbered by PCI order.
struct Discovered {
    _tmp: tempfile::TempDir,
    topo: Topology,
    rails: Rails,
}

impl Discovered {
    fn of(layout: &Layout) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        write_layout(tmp.path(), layout).unwrap();
        let topo = Topology::discover(&SysfsRoot::new(tmp.path())).unwrap();
        let rails = Rails::by_pci_order(&topo);
        Self {
            _tmp: tmp,
            topo,
            rails,
        }
    }

    /// (rail, VF) of the one VF chosen for GPUs number `gpus`.
    fn pick_one(&self, gpus: &[usize], free: &FreeVfs) -> (usize, PciAddr) {
        let g: Vec<PciAddr> = gpus.iter().map(|i| self.topo.gpus[*i].pci).collect();
        let picks = choose_vfs(&self.topo, &self.rails, &g, free, RailRequest::One).unwrap();
        assert_eq!(picks.len(), 1);
        (picks[0].rail, picks[0].vf)
    }
}

#[test]
fn single_gpu_choice_on_both_layouts() {
    let s = Discovered::of(&eight_by_eight(0, 4));
    let free = FreeVfs::all_of(&s.topo);
    for i in 0..8 {
        let (rail, vf) = s.pick_one(&[i], &free);
        assert_eq!(rail, i, "GPU{i}");
        assert_eq!(vf, s.topo.nics[i].vfs[0].info.pci, "GPU{i}");
    }
    let u = Discovered::of(&uneven(0, 2));
    let free = FreeVfs::all_of(&u.topo);
    let expected_rail = [0, 0, 0, 0, 1];
    for (i, want) in expected_rail.into_iter().enumerate() {
        let (rail, vf) = u.pick_one(&[i], &free);
        assert_eq!(rail, want, "uneven GPU{i}");
        assert_eq!(u.topo.nic_of(vf).unwrap().pci(), u.rails.pfs()[want]);
    }
}

#[test]
fn choice_for_gpu_sets_and_tie_breaks() {
    let s = Discovered::of(&eight_by_eight(0, 4));
    let free = FreeVfs::all_of(&s.topo);
    // {0,1}: NIC0 and NIC1 both PIX+PHB; equal free VFs -> lower rail.
    assert_eq!(s.pick_one(&[0, 1], &free).0, 0);
    // With one VF of NIC0 taken, NIC1 has more free VFs.
    let mut fewer = free.clone();
    assert!(fewer.take(s.topo.nics[0].vfs[0].info.pci));
    assert_eq!(s.pick_one(&[0, 1], &fewer).0, 1);
    // {0,4}: every NIC's worst case is SYS; NIC0 and NIC4 have the best sum.
    assert_eq!(s.pick_one(&[0, 4], &free).0, 0);
    // {1,2,3}: NIC1..3 are PIX to one of them and PHB to the rest.
    assert_eq!(s.pick_one(&[1, 2, 3], &free).0, 1);
    // {5,6}: socket 1 only.
    assert_eq!(s.pick_one(&[5, 6], &free).0, 5);
    // No GPUs known: most free VFs, then rail order.
    let none = choose_vfs(&s.topo, &s.rails, &[], &fewer, RailRequest::One).unwrap();
    assert_eq!((none[0].rail, none[0].class), (1, None));

    let u = Discovered::of(&uneven(0, 2));
    let free = FreeVfs::all_of(&u.topo);
    // {GPU0, GPU4}: both NICs are SYS to one GPU; NIC0 is PIX to the other.
    assert_eq!(u.pick_one(&[0, 4], &free).0, 0);
    // {GPU1, GPU2}: NIC0 (worst PHB) beats NIC1 (SYS).
    assert_eq!(u.pick_one(&[1, 2], &free).0, 0);
    // {GPU3, GPU4}: NIC0 is NODE+SYS, NIC1 is SYS+PHB: NIC1 wins on the sum.
    assert_eq!(u.pick_one(&[3, 4], &free).0, 1);
}

#[test]
fn choice_moves_on_when_the_best_nic_is_full() {
    let s = Discovered::of(&eight_by_eight(0, 2));
    let mut free = FreeVfs::all_of(&s.topo);
    let nic0_vfs: Vec<PciAddr> = s.topo.nics[0].vfs.iter().map(|v| v.info.pci).collect();
    for vf in &nic0_vfs {
        assert!(free.take(*vf));
    }
    assert!(!free.take(nic0_vfs[0]), "taking twice must fail");
    let g0 = [s.topo.gpus[0].pci];
    let pick = choose_vfs(&s.topo, &s.rails, &g0, &free, RailRequest::One).unwrap();
    assert_eq!((pick[0].rail, pick[0].class), (1, Some(PHB)));
    // Nothing left anywhere.
    let empty = FreeVfs::new();
    assert_eq!(
        choose_vfs(&s.topo, &s.rails, &g0, &empty, RailRequest::One),
        Err(ChoiceError::NoFreeVf)
    );
}

#[test]
fn all_rails_choice() {
    let s = Discovered::of(&eight_by_eight(0, 2));
    let mut free = FreeVfs::all_of(&s.topo);
    let g = [s.topo.gpus[3].pci];
    let picks = choose_vfs(&s.topo, &s.rails, &g, &free, RailRequest::All).unwrap();
    assert_eq!(picks.len(), 8);
    for (i, pick) in picks.iter().enumerate() {
        assert_eq!(pick.rail, i);
        assert_eq!(pick.pf, s.rails.pfs()[i]);
        assert_eq!(pick.vf, s.topo.nics[i].vfs[0].info.pci);
    }
    let classes: Vec<_> = picks.iter().map(|p| p.class.unwrap()).collect();
    assert_eq!(classes, [PHB, PHB, PHB, PIX, SYS, SYS, SYS, SYS]);
    // Exhaust rail 5.
    for v in &s.topo.nics[5].vfs {
        free.take(v.info.pci);
    }
    assert_eq!(
        choose_vfs(&s.topo, &s.rails, &g, &free, RailRequest::All),
        Err(ChoiceError::RailExhausted {
            rail: 5,
            pf: s.rails.pfs()[5],
        })
    );
}

#[test]
fn first_free_baseline_and_alignment_figure() {
    let s = Discovered::of(&eight_by_eight(0, 8));
    let free = FreeVfs::all_of(&s.topo);
    let b = first_free_vf(&s.rails, &free).unwrap();
    assert_eq!((b.rail, b.vf.to_string().as_str()), (0, "0000:13:00.2"));
    let a = single_gpu_alignment(&s.topo, &s.rails, &free).unwrap();
    // jobnet puts every pod on its GPU's switch; first-free stacks all
    // eight pods on NIC0, which only GPU0 shares a switch with.
    assert_eq!((a.pods, a.jobnet_pix, a.first_free_pix), (8, 8, 1));
    assert_eq!(a.jobnet_fraction(), 1.0);
    assert_eq!(a.first_free_fraction(), 0.125);
    // With 4 VFs per NIC first-free fills NIC0 then NIC1: still only GPU0.
    let s4 = Discovered::of(&eight_by_eight(0, 4));
    let a4 = single_gpu_alignment(&s4.topo, &s4.rails, &FreeVfs::all_of(&s4.topo)).unwrap();
    assert_eq!((a4.jobnet_pix, a4.first_free_pix), (8, 1));
    // On the uneven server only GPU0 has a PIX NIC at all.
    let u = Discovered::of(&uneven(0, 8));
    let au = single_gpu_alignment(&u.topo, &u.rails, &FreeVfs::all_of(&u.topo)).unwrap();
    assert_eq!((au.pods, au.jobnet_pix, au.first_free_pix), (5, 1, 1));
}

#[test]
fn a_node_without_nics_has_no_rails_to_choose_from() {
    let tmp = tempfile::tempdir().unwrap();
    let topo = Topology::discover(&SysfsRoot::new(tmp.path())).unwrap();
    let rails = Rails::by_pci_order(&topo);
    assert_eq!(
        choose_vfs(&topo, &rails, &[], &FreeVfs::new(), RailRequest::One),
        Err(ChoiceError::NoRails)
    );
}
