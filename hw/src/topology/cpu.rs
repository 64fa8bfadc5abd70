//! The CPU identity NCCL's topology file carries on each `<cpu>` element.
//!
//! NCCL tunes for the CPU architecture and, on x86, for the vendor, family
//! and model (inter-socket bandwidth differs between generations).

/// Architecture, vendor, family and model of the node's CPUs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuInfo {
    /// NCCL's architecture name: `x86_64`, `arm64` or `ppc64`.
    pub arch: String,
    /// `vendor_id` (`GenuineIntel`, `AuthenticAMD`), on x86.
    pub vendor: Option<String>,
    /// `cpu family`, on x86.
    pub family: Option<u32>,
    /// `model`, on x86.
    pub model: Option<u32>,
}

/// NCCL's name for a Rust target architecture.
pub fn nccl_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "aarch64" => "arm64",
        "powerpc64" => "ppc64",
        other => other,
    }
}

impl CpuInfo {
    /// Reads the first processor's fields from `/proc/cpuinfo` text.
    pub fn from_proc_cpuinfo(text: &str, rust_arch: &str) -> Self {
        let mut vendor = None;
        let mut family = None;
        let mut model = None;
        for line in text.lines() {
            if line.trim().is_empty() && vendor.is_some() {
                break;
            }
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim() {
                "vendor_id" if vendor.is_none() => {
                    vendor = Some(v.chars().take(32).collect());
                }
                "cpu family" if family.is_none() => family = v.parse().ok(),
                "model" if model.is_none() => model = v.parse().ok(),
                _ => {}
            }
        }
        Self {
            arch: nccl_arch(rust_arch).to_owned(),
            vendor,
            family,
            model,
        }
    }

    /// This machine's CPU (from `/proc/cpuinfo`; architecture only when
    /// that cannot be read).
    pub fn detect() -> Self {
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self::from_proc_cpuinfo(&text, std::env::consts::ARCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_x86_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n\nprocessor\t: 1\nvendor_id\t: Other\n";
        let c = CpuInfo::from_proc_cpuinfo(text, "x86_64");
        assert_eq!(c.arch, "x86_64");
        assert_eq!(c.vendor.as_deref(), Some("GenuineIntel"));
        assert_eq!((c.family, c.model), (Some(6), Some(143)));
        let arm = CpuInfo::from_proc_cpuinfo("processor : 0\nBogoMIPS : 50\n", "aarch64");
        assert_eq!((arm.arch.as_str(), arm.vendor), ("arm64", None));
    }
}
