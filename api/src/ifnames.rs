//! Pod interface names of a multi-rail attachment, shared by the plugin
//! (which creates the interfaces) and jobnetd (which writes NCCL hints that
//! name them).

/// Longest interface name Linux accepts (IFNAMSIZ - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// The pod interface name of the `index`-th VF (rail order) of attachment
/// `ifname`: the first keeps `ifname`, the others get `r<rail>` appended
/// (`net1`, `net1r1`, `net1r2`, ...), the base shortened to fit 15 bytes.
pub fn rail_ifname(ifname: &str, index: usize, rail: u32) -> String {
    if index == 0 {
        return ifname.to_owned();
    }
    let suffix = format!("r{rail}");
    let keep = MAX_IFNAME_LEN.saturating_sub(suffix.len());
    let mut base = String::new();
    for c in ifname.chars() {
        if base.len() + c.len_utf8() > keep {
            break;
        }
        base.push(c);
    }
    base + &suffix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_keeps_the_name_others_get_the_rail() {
        assert_eq!(rail_ifname("net1", 0, 0), "net1");
        assert_eq!(rail_ifname("net1", 1, 1), "net1r1");
        assert_eq!(rail_ifname("net1", 7, 7), "net1r7");
        let long = rail_ifname("abcdefghijklmno", 1, 12);
        assert_eq!(long, "abcdefghijklr12");
        assert!(long.len() <= MAX_IFNAME_LEN);
    }
}
