//! Routes (`ip route add/del/show`), IPv4 and IPv6.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use netlink_packet_route::{
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
        RouteScope, RouteType,
    },
    AddressFamily, RouteNetlinkMessage,
};

use crate::{
    error::{ErrorKind, NetlinkError},
    handle::Handle,
};

/// The main routing table.
pub const TABLE_MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// A unicast route.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Destination; `None` is the default route of the gateway's family.
    pub dst: Option<IpNet>,
    /// Next hop.
    pub gateway: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Preferred source address.
    pub src: Option<IpAddr>,
    /// Path MTU (RTAX_MTU).
    pub mtu: Option<u32>,
    /// Advertised TCP MSS (RTAX_ADVMSS).
    pub advmss: Option<u32>,
    /// Metric.
    pub priority: Option<u32>,
    /// Table; `None` is the main table.
    pub table: Option<u32>,
    /// Scope; `None` picks link scope without a gateway and universe with
    /// one, as `ip route add` does.
    pub scope: Option<RouteScope>,
}

impl Route {
    fn family(&self) -> Option<AddressFamily> {
        let ip = self.dst.map(|d| d.addr()).or(self.gateway)?;
        Some(match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        })
    }
}

/// Which routes [`Handle::routes`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteFamily {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
}

/// Builds the RTM_NEWROUTE body for `route`; `for_delete` leaves the scope
/// as a wildcard as `ip route del` does.
pub fn build_route(route: &Route, for_delete: bool) -> Result<RouteMessage, String> {
    let family = route
        .family()
        .ok_or("a route needs a destination or a gateway")?;
    if let (Some(d), Some(g)) = (route.dst, route.gateway) {
        if d.addr().is_ipv4() != g.is_ipv4() {
            return Err("destination and gateway families differ".into());
        }
    }
    let mut msg = RouteMessage::default();
    msg.header.address_family = family;
    msg.header.destination_prefix_length = route.dst.map_or(0, |d| d.prefix_len());
    msg.header.protocol = RouteProtocol::Boot;
    msg.header.kind = RouteType::Unicast;
    msg.header.scope = match (route.scope, for_delete) {
        (Some(s), _) => s,
        (None, true) => RouteScope::NoWhere,
        (None, false) if route.gateway.is_none() => RouteScope::Link,
        (None, false) => RouteScope::Universe,
    };
    let table = route.table.unwrap_or(TABLE_MAIN);
    // The header field is 8 bits; bigger table ids go in RTA_TABLE only.
    msg.header.table = u8::try_from(table).unwrap_or(0);
    if let Some(dst) = route.dst {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::from(
                dst.network(),
            )));
    }
    if let Some(gw) = route.gateway {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
    }
    if let Some(src) = route.src {
        msg.attributes
            .push(RouteAttribute::PrefSource(RouteAddress::from(src)));
    }
    if let Some(oif) = route.oif {
        msg.attributes.push(RouteAttribute::Oif(oif));
    }
    if let Some(p) = route.priority {
        msg.attributes.push(RouteAttribute::Priority(p));
    }
    if table > 255 {
        msg.attributes.push(RouteAttribute::Table(table));
    }
    let mut metrics = Vec::new();
    if let Some(mtu) = route.mtu {
        metrics.push(RouteMetric::Mtu(mtu));
    }
    if let Some(mss) = route.advmss {
        metrics.push(RouteMetric::Advmss(mss));
    }
    if !metrics.is_empty() {
        msg.attributes.push(RouteAttribute::Metrics(metrics));
    }
    Ok(msg)
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn parse_route(msg: &RouteMessage) -> Option<Route> {
    if msg.header.kind != RouteType::Unicast {
        return None;
    }
    let mut route = Route {
        table: Some(u32::from(msg.header.table)),
        scope: Some(msg.header.scope),
        ..Default::default()
    };
    let mut dst_ip = None;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst_ip = route_ip(a),
            RouteAttribute::Gateway(a) => route.gateway = route_ip(a),
            RouteAttribute::PrefSource(a) => route.src = route_ip(a),
            RouteAttribute::Oif(i) => route.oif = Some(*i),
            RouteAttribute::Priority(p) => route.priority = Some(*p),
            RouteAttribute::Table(t) => route.table = Some(*t),
            RouteAttribute::Metrics(ms) => {
                for m in ms {
                    match m {
                        RouteMetric::Mtu(v) => route.mtu = Some(*v),
                        RouteMetric::Advmss(v) => route.advmss = Some(*v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let prefix = msg.header.destination_prefix_length;
    route.dst = match dst_ip {
        Some(ip) => IpNet::new(ip, prefix).ok(),
        None if prefix == 0 => None,
        None => return None,
    };
    Some(route)
}

impl Handle {
    /// Adds a route; fails with EEXIST when an identical one exists.
    pub async fn add_route(&self, route: &Route) -> Result<(), NetlinkError> {
        let target = format!("{route:?}");
        let msg = build_route(route, false)
            .map_err(|e| NetlinkError::new("add route", &target, ErrorKind::InvalidInput(e)))?;
        self.request(
            "add route",
            &target,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .await?;
        Ok(())
    }

    /// Deletes the route matching `route` (unset fields match anything).
    pub async fn delete_route(&self, route: &Route) -> Result<(), NetlinkError> {
        let target = format!("{route:?}");
        let msg = build_route(route, true)
            .map_err(|e| NetlinkError::new("delete route", &target, ErrorKind::InvalidInput(e)))?;
        self.request(
            "delete route",
            &target,
            RouteNetlinkMessage::DelRoute(msg),
            0,
        )
        .await?;
        Ok(())
    }

    /// Lists the unicast routes of one family in `table` (`None`: all tables).
    pub async fn routes(
        &self,
        family: RouteFamily,
        table: Option<u32>,
    ) -> Result<Vec<Route>, NetlinkError> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match family {
            RouteFamily::V4 => AddressFamily::Inet,
            RouteFamily::V6 => AddressFamily::Inet6,
        };
        let replies = self
            .dump(
                "list routes",
                &format!("{family:?}"),
                RouteNetlinkMessage::GetRoute(msg),
            )
            .await?;
        Ok(replies
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => parse_route(r),
                _ => None,
            })
            .filter(|r| table.is_none() || r.table == table)
            .collect())
    }
}
