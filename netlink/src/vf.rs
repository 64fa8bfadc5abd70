//! PF-side settings of an SR-IOV VF (`ip link set <pf> vf <n> ...`): message
//! building (pure, byte-comparable), sending, and reading back the current
//! settings so they can be saved and restored.

use netlink_packet_core::{
    Emitable, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::{
    link::{
        LinkAttribute, LinkExtentMask, LinkMessage, LinkVfInfo, VfInfo, VfInfoGuid,
        VfInfoLinkState, VfInfoMac, VfInfoRate, VfInfoSpoofCheck, VfInfoTrust, VfInfoVlan,
        VfLinkState, VfVlan, VfVlanInfo, VlanProtocol,
    },
    RouteNetlinkMessage,
};

use crate::{
    error::{ErrorKind, NetlinkError},
    handle::Handle,
    link::link_message,
    mac::MacAddr,
};

/// Highest 802.1Q VLAN id.
pub const MAX_VLAN_ID: u16 = 4095;
/// Highest 802.1p priority.
pub const MAX_VLAN_QOS: u8 = 7;

/// Tag protocol of a VF VLAN.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum VlanProto {
    /// 802.1Q (C-tag), the default.
    #[default]
    Dot1Q,
    /// 802.1ad (S-tag, QinQ).
    Dot1Ad,
}

/// A VF's port VLAN.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct VfVlanConfig {
    /// VLAN id, 0 to clear the VLAN.
    pub id: u16,
    /// 802.1p priority (0..=7).
    pub qos: u8,
    /// Tag protocol.
    pub proto: VlanProto,
}

/// Administrative link state the PF imposes on a VF.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum VfLinkStateConfig {
    /// Follow the PF's link.
    #[default]
    Auto,
    /// Always up.
    Enable,
    /// Always down.
    Disable,
}

/// The PF-side settings of one VF; `None` leaves a setting untouched.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct VfSettings {
    /// VF MAC address (all zeros lets the VF choose).
    pub mac: Option<MacAddr>,
    /// Port VLAN.
    pub vlan: Option<VfVlanConfig>,
    /// MAC/VLAN anti-spoof check.
    pub spoofchk: Option<bool>,
    /// Trusted VF (may change MAC, enter promiscuous mode).
    pub trust: Option<bool>,
    /// Minimum TX rate in Mbit/s (0 = none). Sent together with the maximum.
    pub min_tx_rate: Option<u32>,
    /// Maximum TX rate in Mbit/s (0 = unlimited). Sent together with the minimum.
    pub max_tx_rate: Option<u32>,
    /// Link state.
    pub link_state: Option<VfLinkStateConfig>,
    /// InfiniBand node GUID.
    pub ib_node_guid: Option<u64>,
    /// InfiniBand port GUID.
    pub ib_port_guid: Option<u64>,
}

impl VfSettings {
    /// True when no setting is given.
    pub fn is_empty(&self) -> bool {
        *self == VfSettings::default()
    }

    /// Keeps only the fields that are set in `mask` (e.g. to restore exactly
    /// what was changed from a saved state).
    pub fn restricted_to(&self, mask: &VfSettings) -> VfSettings {
        fn pick<T: Copy>(v: Option<T>, m: Option<impl Sized>) -> Option<T> {
            m.and(v)
        }
        let rate = mask.min_tx_rate.is_some() || mask.max_tx_rate.is_some();
        VfSettings {
            mac: pick(self.mac, mask.mac),
            vlan: pick(self.vlan, mask.vlan),
            spoofchk: pick(self.spoofchk, mask.spoofchk),
            trust: pick(self.trust, mask.trust),
            min_tx_rate: if rate { self.min_tx_rate } else { None },
            max_tx_rate: if rate { self.max_tx_rate } else { None },
            link_state: pick(self.link_state, mask.link_state),
            ib_node_guid: pick(self.ib_node_guid, mask.ib_node_guid),
            ib_port_guid: pick(self.ib_port_guid, mask.ib_port_guid),
        }
    }
}

/// A VF setting the kernel would reject, caught before sending.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VfSettingsError {
    /// Nothing to apply.
    #[error("no VF setting given")]
    Empty,
    /// VLAN id above 4095.
    #[error("VLAN id {0} is above 4095")]
    VlanId(u16),
    /// QoS above 7.
    #[error("VLAN QoS {0} is above 7")]
    VlanQos(u8),
    /// Minimum rate above a non-zero maximum.
    #[error("min_tx_rate {min} is above max_tx_rate {max}")]
    Rate {
        /// Minimum.
        min: u32,
        /// Maximum.
        max: u32,
    },
    /// Multicast MAC address.
    #[error("VF MAC {0} is a multicast address")]
    MulticastMac(MacAddr),
}

impl VfSettings {
    /// Checks the values against the kernel's limits.
    pub fn validate(&self) -> Result<(), VfSettingsError> {
        if self.is_empty() {
            return Err(VfSettingsError::Empty);
        }
        if let Some(v) = self.vlan {
            if v.id > MAX_VLAN_ID {
                return Err(VfSettingsError::VlanId(v.id));
            }
            if v.qos > MAX_VLAN_QOS {
                return Err(VfSettingsError::VlanQos(v.qos));
            }
        }
        let (min, max) = (self.min_tx_rate.unwrap_or(0), self.max_tx_rate.unwrap_or(0));
        if max != 0 && min > max {
            return Err(VfSettingsError::Rate { min, max });
        }
        if let Some(mac) = self.mac {
            if mac.0[0] & 1 == 1 {
                return Err(VfSettingsError::MulticastMac(mac));
            }
        }
        Ok(())
    }
}

/// Builds the IFLA_VF_INFO entries for VF `vf`. The kernel reads them by
/// type and applies them in its own fixed order; we emit them in that
/// order except for the rate, which goes last as iproute2 puts it, so the
/// bytes equal those of `ip link set <pf> vf <n>` with the arguments in that
/// order. As iproute2 does, an 802.1Q VLAN uses the legacy
/// IFLA_VF_VLAN and only 802.1ad needs IFLA_VF_VLAN_LIST; both rates go in
/// one IFLA_VF_RATE (a missing one is sent as 0).
pub fn build_vf_info(vf: u32, s: &VfSettings) -> Result<LinkVfInfo, VfSettingsError> {
    s.validate()?;
    let mut infos = Vec::new();
    if let Some(mac) = s.mac {
        infos.push(VfInfo::Mac(VfInfoMac::new(vf, &mac.0)));
    }
    if let Some(v) = s.vlan {
        match v.proto {
            VlanProto::Dot1Q => infos.push(VfInfo::Vlan(VfInfoVlan::new(
                vf,
                u32::from(v.id),
                u32::from(v.qos),
            ))),
            VlanProto::Dot1Ad => infos.push(VfInfo::VlanList(vec![VfVlan::Info(VfVlanInfo::new(
                vf,
                u32::from(v.id),
                u32::from(v.qos),
                VlanProtocol::Ieee8021Ad,
            ))])),
        }
    }
    if let Some(on) = s.spoofchk {
        infos.push(VfInfo::SpoofCheck(VfInfoSpoofCheck::new(vf, on)));
    }
    if let Some(state) = s.link_state {
        let state = match state {
            VfLinkStateConfig::Auto => VfLinkState::Auto,
            VfLinkStateConfig::Enable => VfLinkState::Enable,
            VfLinkStateConfig::Disable => VfLinkState::Disable,
        };
        infos.push(VfInfo::LinkState(VfInfoLinkState::new(vf, state)));
    }
    if let Some(on) = s.trust {
        infos.push(VfInfo::Trust(VfInfoTrust::new(vf, on)));
    }
    if let Some(guid) = s.ib_node_guid {
        infos.push(VfInfo::IbNodeGuid(VfInfoGuid::new(vf, guid)));
    }
    if let Some(guid) = s.ib_port_guid {
        infos.push(VfInfo::IbPortGuid(VfInfoGuid::new(vf, guid)));
    }
    if s.min_tx_rate.is_some() || s.max_tx_rate.is_some() {
        infos.push(VfInfo::Rate(VfInfoRate::new(
            vf,
            s.min_tx_rate.unwrap_or(0),
            s.max_tx_rate.unwrap_or(0),
        )));
    }
    Ok(LinkVfInfo(infos))
}

/// Builds the link message (ifinfomsg + IFLA_VFINFO_LIST) that applies `s`
/// to VF `vf` of the PF with index `pf_index`.
pub fn build_vf_message(
    pf_index: u32,
    vf: u32,
    s: &VfSettings,
) -> Result<LinkMessage, VfSettingsError> {
    let mut msg = link_message(pf_index);
    msg.attributes
        .push(LinkAttribute::VfInfoList(vec![build_vf_info(vf, s)?]));
    Ok(msg)
}

/// The payload bytes (ifinfomsg and attributes, without the netlink
/// header) of the message [`build_vf_message`] builds.
pub fn vf_message_payload(
    pf_index: u32,
    vf: u32,
    s: &VfSettings,
) -> Result<Vec<u8>, VfSettingsError> {
    let msg = build_vf_message(pf_index, vf, s)?;
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.emit(&mut buf);
    Ok(buf)
}

/// The complete RTM_SETLINK request bytes, header included, with sequence
/// number `seq` and port 0, exactly as sent on the socket.
pub fn vf_message_bytes(
    pf_index: u32,
    vf: u32,
    s: &VfSettings,
    seq: u32,
) -> Result<Vec<u8>, VfSettingsError> {
    let msg = build_vf_message(pf_index, vf, s)?;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = seq;
    let mut nl = NetlinkMessage::new(
        header,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::SetLink(msg)),
    );
    nl.finalize();
    let mut buf = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut buf);
    Ok(buf)
}

/// The PF-side settings of one VF as the kernel reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfState {
    /// VF number.
    pub vf: u32,
    /// Every reported setting, in the form accepted by [`Handle::set_vf`].
    pub settings: VfSettings,
}

fn vf_state_from(info: &LinkVfInfo) -> Option<VfState> {
    let mut vf = None;
    let mut s = VfSettings::default();
    for item in &info.0 {
        match item {
            VfInfo::Mac(m) => {
                vf = Some(m.vf_id);
                s.mac = MacAddr::from_slice(&m.mac[..6]);
            }
            VfInfo::Vlan(v) => {
                vf = Some(v.vf_id);
                s.vlan.get_or_insert(VfVlanConfig {
                    id: u16::try_from(v.vlan_id).unwrap_or(0),
                    qos: u8::try_from(v.qos).unwrap_or(0),
                    proto: VlanProto::Dot1Q,
                });
            }
            VfInfo::VlanList(list) => {
                // The list carries the tag protocol, so it wins over IFLA_VF_VLAN.
                if let Some(VfVlan::Info(i)) = list.first() {
                    vf = Some(i.vf_id);
                    s.vlan = Some(VfVlanConfig {
                        id: u16::try_from(i.vlan_id).unwrap_or(0),
                        qos: u8::try_from(i.qos).unwrap_or(0),
                        proto: match i.protocol {
                            VlanProtocol::Ieee8021Ad => VlanProto::Dot1Ad,
                            _ => VlanProto::Dot1Q,
                        },
                    });
                }
            }
            VfInfo::Rate(r) => {
                vf = Some(r.vf_id);
                s.min_tx_rate = Some(r.min_tx_rate);
                s.max_tx_rate = Some(r.max_tx_rate);
            }
            VfInfo::SpoofCheck(c) => s.spoofchk = Some(c.enabled),
            VfInfo::Trust(t) => s.trust = Some(t.enabled),
            VfInfo::LinkState(l) => {
                s.link_state = match l.state {
                    VfLinkState::Auto => Some(VfLinkStateConfig::Auto),
                    VfLinkState::Enable => Some(VfLinkStateConfig::Enable),
                    VfLinkState::Disable => Some(VfLinkStateConfig::Disable),
                    _ => None,
                }
            }
            VfInfo::IbNodeGuid(g) => s.ib_node_guid = Some(g.guid),
            VfInfo::IbPortGuid(g) => s.ib_port_guid = Some(g.guid),
            _ => {}
        }
    }
    vf.map(|vf| VfState { vf, settings: s })
}

/// Extracts the VF states from a link message (RTM_NEWLINK answer).
pub fn vf_states_from_message(msg: &LinkMessage) -> Vec<VfState> {
    msg.attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::VfInfoList(list) => Some(list),
            _ => None,
        })
        .flatten()
        .filter_map(vf_state_from)
        .collect()
}

impl Handle {
    /// Applies `settings` to VF `vf` of PF `pf_index` in one message. When
    /// only one of min/max TX rate is given, the other is read first so
    /// that it is kept (the kernel takes both at once).
    pub async fn set_vf(
        &self,
        pf_index: u32,
        vf: u32,
        settings: &VfSettings,
    ) -> Result<(), NetlinkError> {
        let target = format!("vf {vf} of link #{pf_index}");
        let mut s = *settings;
        if s.min_tx_rate.is_some() != s.max_tx_rate.is_some() {
            let current = self
                .vf_states(pf_index)
                .await?
                .into_iter()
                .find(|st| st.vf == vf)
                .map(|st| st.settings)
                .unwrap_or_default();
            s.min_tx_rate = s.min_tx_rate.or(current.min_tx_rate).or(Some(0));
            s.max_tx_rate = s.max_tx_rate.or(current.max_tx_rate).or(Some(0));
        }
        let msg = build_vf_message(pf_index, vf, &s).map_err(|e| {
            NetlinkError::new("set vf", &target, ErrorKind::InvalidInput(e.to_string()))
        })?;
        self.request("set vf", &target, RouteNetlinkMessage::SetLink(msg), 0)
            .await?;
        Ok(())
    }

    /// Reads the current settings of every VF of PF `pf_index`
    /// (RTM_GETLINK with RTEXT_FILTER_VF). Empty for a link without VFs.
    pub async fn vf_states(&self, pf_index: u32) -> Result<Vec<VfState>, NetlinkError> {
        let target = format!("link #{pf_index}");
        let mut msg = link_message(pf_index);
        msg.attributes.push(LinkAttribute::ExtMask(vec![
            LinkExtentMask::Vf,
            LinkExtentMask::SkipStats,
        ]));
        let replies = self
            .get(
                "get vf settings",
                &target,
                RouteNetlinkMessage::GetLink(msg),
            )
            .await?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(vf_states_from_message(l)),
                _ => None,
            })
            .flatten()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_rejects_out_of_range_values() {
        let vlan = |id, qos| VfSettings {
            vlan: Some(VfVlanConfig {
                id,
                qos,
                proto: VlanProto::Dot1Q,
            }),
            ..Default::default()
        };
        assert_eq!(vlan(4096, 0).validate(), Err(VfSettingsError::VlanId(4096)));
        assert_eq!(vlan(10, 8).validate(), Err(VfSettingsError::VlanQos(8)));
        assert!(vlan(4095, 7).validate().is_ok());
        assert_eq!(
            VfSettings::default().validate(),
            Err(VfSettingsError::Empty)
        );
        let rate = VfSettings {
            min_tx_rate: Some(100),
            max_tx_rate: Some(10),
            ..Default::default()
        };
        assert!(matches!(rate.validate(), Err(VfSettingsError::Rate { .. })));
    }

    #[test]
    fn built_message_parses_back_to_same_settings() {
        let s = VfSettings {
            mac: Some(MacAddr([2, 1, 2, 3, 4, 5])),
            vlan: Some(VfVlanConfig {
                id: 42,
                qos: 5,
                proto: VlanProto::Dot1Ad,
            }),
            spoofchk: Some(false),
            trust: Some(true),
            min_tx_rate: Some(1),
            max_tx_rate: Some(9),
            link_state: Some(VfLinkStateConfig::Disable),
            ib_node_guid: Some(0x1122),
            ib_port_guid: Some(0x3344),
        };
        let msg = build_vf_message(7, 3, &s).unwrap();
        assert_eq!(msg.header.index, 7);
        let states = vf_states_from_message(&msg);
        assert_eq!(states, vec![VfState { vf: 3, settings: s }]);
    }

    #[test]
    fn restricted_to_keeps_only_masked_fields() {
        let saved = VfSettings {
            mac: Some(MacAddr([2, 0, 0, 0, 0, 1])),
            spoofchk: Some(true),
            trust: Some(false),
            min_tx_rate: Some(0),
            max_tx_rate: Some(0),
            ..Default::default()
        };
        let applied = VfSettings {
            trust: Some(true),
            max_tx_rate: Some(100),
            ..Default::default()
        };
        let r = saved.restricted_to(&applied);
        assert_eq!(r.trust, Some(false));
        assert_eq!((r.min_tx_rate, r.max_tx_rate), (Some(0), Some(0)));
        assert_eq!((r.mac, r.spoofchk), (None, None));
    }
}
