//! Sparkplug B edge nodes: `spBv1.0/{group}/{NBIRTH|NDATA|NDEATH|DBIRTH|
//! DDATA|DDEATH}/{edge node}[/{device}]`, protobuf payloads ([`proto`]).
//!
//! Why a module of its own, beside the pure decoder: Sparkplug is a
//! session protocol. A data message names its metrics by the aliases its
//! node's birth certificate gave them, and carries a sequence number that
//! only makes sense after the one before, so decoding needs what earlier
//! messages said. [`Sessions`] keeps that, per edge node, bounded
//! (`[ingest.sparkplug]`), and turns each message into the same
//! [`Decoded`] the other topics give: readings for `Admission::admit`,
//! rejections kept and counted like any other, and the gateway's status.
//!
//! The edge node id *is* the gateway id: a node owns channels, is refused
//! others', is shown online and offline, exactly as a gateway on
//! `trackside/{gateway}/...` (on the TLS listener under its certificate's
//! `/tenants/{gateway}/` as well). NBIRTH (and DBIRTH) mark it online;
//! NDEATH, its will, and DDEATH mark it offline, as the status topic's
//! will does for other gateways.
//!
//! Sequence numbers are checked on every message after NBIRTH (0 to 255,
//! wrapping); a gap is counted, logged, kept as a `sequence` rejection,
//! and the node is asked to rebirth through an `NCMD` on the link the
//! message came by ([`Sessions::take_commands`]). The message's own
//! readings are kept: the usual cause is a lost data message, and the
//! aliases stay those of the birth until the next one. An NDEATH is
//! honoured only when its `bdSeq` is the current birth's: a will from an
//! earlier session that arrives late changes nothing.
//!
//! Scaled out over a shared subscription (issue 19), an instance stores
//! only a share of the messages but sees every one on its live link: the
//! session is followed there ([`Sessions::decode`] with `follow`), and
//! the stored share only reads it. See docs/gateways.md for the mapping
//! rule and the limits.

pub mod proto;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SubsecRound as _, Utc};
use prost::Message as _;
use tokio::sync::mpsc;
use trackside_wire::ChannelName;

use super::decode::{
    DecodeContext, Decoded, NAMESPACE, TENANT_ROOT, check_ts, rejection, valid_gateway_id,
};
use crate::config::SparkplugConfig;
use crate::metrics::Metrics;
use crate::reading::{DecodedReading, GatewayStatus, Rejection, RejectionKind};
use proto::{Metric, Payload};

/// An MQTT publish a link sends for Trackside (a rebirth request).
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Rebirth requests waiting for their link; past it they are dropped and
/// counted (`trackside_sparkplug_commands_dropped_total`), and the node is
/// asked again at its next gap.
pub const COMMAND_QUEUE: usize = 64;

/// Whether `topic` is in Sparkplug B's namespace, with or without a
/// certificate's tenant prefix.
pub fn is_sparkplug(topic: &str) -> bool {
    let route = match topic.strip_prefix(TENANT_ROOT) {
        Some(rest) => rest.split_once('/').map_or("", |(_, route)| route),
        None => topic,
    };
    route
        .strip_prefix(NAMESPACE)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NBirth,
    NData,
    NDeath,
    DBirth,
    DData,
    DDeath,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::NBirth => "NBIRTH",
            Self::NData => "NDATA",
            Self::NDeath => "NDEATH",
            Self::DBirth => "DBIRTH",
            Self::DData => "DDATA",
            Self::DDeath => "DDEATH",
        }
    }
}

/// A parsed topic: the message type and who sent it.
struct Topic<'a> {
    /// `/tenants/{tenant}/` when the message came that way.
    prefix: &'a str,
    group: &'a str,
    kind: Kind,
    node: &'a str,
    device: Option<&'a str>,
}

enum Parsed<'a> {
    Message(Topic<'a>),
    /// Commands (ours included: the link subscribes to the whole
    /// namespace) and host STATE: nothing to ingest.
    Ignored,
}

/// A Sparkplug id (group, device): 1 to 64 characters, none of MQTT's
/// `+`, `#`, `/`, and no control characters.
fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.chars().count())
        && !id
            .chars()
            .any(|c| matches!(c, '+' | '#' | '/') || c.is_control())
}

/// Splits the topic; `Err` carries the gateway (when one is named) and the
/// reason.
fn parse_topic(topic: &str) -> Result<Parsed<'_>, (Option<&str>, String)> {
    let (prefix, tenant, route) = match topic.strip_prefix(TENANT_ROOT) {
        Some(rest) => match rest.split_once('/') {
            Some((tenant, route)) => (
                &topic[..TENANT_ROOT.len() + tenant.len() + 1],
                Some(tenant),
                route,
            ),
            None => return Err((None, "no topic after the tenant".into())),
        },
        None => ("", None, topic),
    };
    if let Some(tenant) = tenant.filter(|tenant| !valid_gateway_id(tenant)) {
        return Err((
            None,
            format!(
                "tenant `{tenant}` is not a gateway id (1 to 64 of letters, digits, `_`, `-`, `.`)"
            ),
        ));
    }
    let parts: Vec<&str> = route.split('/').collect();
    let (group, kind, node, device) = match parts.as_slice() {
        [NAMESPACE, "STATE", ..] => return Ok(Parsed::Ignored),
        [NAMESPACE, _, "NCMD" | "DCMD", ..] => return Ok(Parsed::Ignored),
        [NAMESPACE, group, kind, node] => (*group, *kind, *node, None),
        [NAMESPACE, group, kind, node, device] => (*group, *kind, *node, Some(*device)),
        _ => {
            return Err((
                tenant,
                format!(
                    "not a Sparkplug B topic: expected \
                     `{NAMESPACE}/{{group}}/{{NBIRTH|NDATA|NDEATH}}/{{edge node}}` or \
                     `{NAMESPACE}/{{group}}/{{DBIRTH|DDATA|DDEATH}}/{{edge node}}/{{device}}`"
                ),
            ));
        }
    };
    if !valid_gateway_id(node) {
        return Err((
            tenant,
            format!(
                "edge node id `{}` is not a gateway id (1 to 64 of letters, digits, `_`, `-`, `.`)",
                node.chars().take(64).collect::<String>()
            ),
        ));
    }
    if let Some(tenant) = tenant
        && tenant != node
    {
        return Err((
            Some(tenant),
            format!(
                "the certificate of gateway `{tenant}` does not allow publishing as edge node \
                 `{node}`: use `{TENANT_ROOT}{tenant}/{NAMESPACE}/{{group}}/.../{tenant}`"
            ),
        ));
    }
    if !valid_id(group) {
        return Err((
            Some(node),
            "group id must be 1 to 64 characters, no `+`, `#`, `/`".into(),
        ));
    }
    if let Some(device) = device.filter(|device| !valid_id(device)) {
        return Err((
            Some(node),
            format!(
                "device id `{}` must be 1 to 64 characters, no `+`, `#`, `/`",
                device.chars().take(64).collect::<String>()
            ),
        ));
    }
    let kind = match (kind, device.is_some()) {
        ("NBIRTH", false) => Kind::NBirth,
        ("NDATA", false) => Kind::NData,
        ("NDEATH", false) => Kind::NDeath,
        ("DBIRTH", true) => Kind::DBirth,
        ("DDATA", true) => Kind::DData,
        ("DDEATH", true) => Kind::DDeath,
        (other, _) => {
            return Err((
                Some(node),
                format!(
                    "`{}` is not a Sparkplug B message type for this topic: NBIRTH, NDATA and \
                     NDEATH name the edge node alone, DBIRTH, DDATA and DDEATH a device too",
                    other.chars().take(16).collect::<String>()
                ),
            ));
        }
    };
    Ok(Parsed::Message(Topic {
        prefix,
        group,
        kind,
        node,
        device,
    }))
}

/// What a metric name maps to.
#[derive(Debug, Clone, PartialEq)]
enum Mapped {
    Channel(ChannelName),
    /// Sparkplug's own (`bdSeq`, `Node Control/*`, `Device Control/*`):
    /// not telemetry, never listed.
    Internal,
    /// No channel: the reason, listed once in the birth's rejection.
    Unmapped(String),
}

/// The mapping rule (docs/gateways.md): a configured entry's metric list
/// first, then a name that is itself `circuit/parameter`, then a name that
/// is a parameter of the entry's `circuit` or of the device id.
fn map_metric(
    config: &SparkplugConfig,
    group: &str,
    node: &str,
    device: Option<&str>,
    name: &str,
) -> Mapped {
    if name == proto::BD_SEQ_METRIC
        || name.starts_with("Node Control/")
        || name.starts_with("Device Control/")
    {
        return Mapped::Internal;
    }
    let entries = config.nodes.iter().filter(|entry| {
        entry.edge_node == node && entry.group.as_deref().is_none_or(|g| g == group)
    });
    // An entry for the device itself first, then the node's general one.
    let mut entries: Vec<_> = entries
        .filter(|entry| entry.device.is_none() || entry.device.as_deref() == device)
        .collect();
    entries.sort_by_key(|entry| entry.device.is_none());
    let entry = entries.first();
    let circuit = entry.and_then(|entry| entry.circuit.as_deref()).or(device);
    let target = entry
        .and_then(|entry| entry.metrics.get(name))
        .map(String::as_str)
        .unwrap_or(name);
    let parsed = match (target.contains('/'), circuit) {
        (true, _) => ChannelName::parse(target),
        (false, Some(circuit)) => ChannelName::from_parts(circuit, target),
        (false, None) => {
            return Mapped::Unmapped(format!(
                "`{name}`: no circuit (name it `circuit/parameter`, publish it from a device \
                 named after its circuit, or map it in [[ingest.sparkplug.nodes]])"
            ));
        }
    };
    match parsed {
        Ok(channel) => Mapped::Channel(channel),
        Err(err) => Mapped::Unmapped(format!("`{name}`: {err}")),
    }
}

/// A metric declared at birth.
#[derive(Debug)]
struct Known {
    name: String,
    datatype: u32,
    channel: Option<ChannelName>,
}

/// The metrics of the node itself or of one device.
#[derive(Debug, Default)]
struct Declared {
    by_alias: HashMap<u64, Arc<Known>>,
    by_name: HashMap<String, Arc<Known>>,
}

impl Declared {
    fn len(&self) -> usize {
        self.by_name.len()
    }
}

#[derive(Debug)]
struct Node {
    bd_seq: Option<u64>,
    seq: u8,
    own: Declared,
    devices: HashMap<String, Declared>,
    /// Devices whose DDEATH came since their birth: while any is dead,
    /// the gateway is shown offline.
    dead_devices: HashSet<String>,
}

impl Node {
    fn aliases(&self) -> usize {
        self.own.len() + self.devices.values().map(Declared::len).sum::<usize>()
    }
}

type NodeKey = (String, String);

/// The sessions of every edge node, and the rebirth requests for the
/// links to send.
pub struct Sessions {
    config: SparkplugConfig,
    nodes: Mutex<HashMap<NodeKey, Node>>,
    /// When each node was last asked to rebirth (bounded like `nodes`).
    asked: Mutex<HashMap<NodeKey, Instant>>,
    commands: mpsc::Sender<Command>,
    command_rx: Mutex<Option<mpsc::Receiver<Command>>>,
    metrics: Arc<Metrics>,
}

impl Sessions {
    pub fn new(config: SparkplugConfig, metrics: Arc<Metrics>) -> Self {
        let (commands, command_rx) = mpsc::channel(COMMAND_QUEUE);
        Self {
            config,
            nodes: Mutex::default(),
            asked: Mutex::default(),
            commands,
            command_rx: Mutex::new(Some(command_rx)),
            metrics,
        }
    }

    /// The rebirth requests, for the one link that publishes them (the
    /// first caller gets them).
    pub fn take_commands(&self) -> Option<mpsc::Receiver<Command>> {
        self.command_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// Decodes one Sparkplug B publish. `follow`: this source sees every
    /// message, so births, deaths and sequence numbers update the session;
    /// otherwise (the stored share of a shared subscription) the session
    /// is only read.
    pub fn decode(&self, topic: &str, payload: &[u8], cx: &DecodeContext, follow: bool) -> Decoded {
        let topic_ = match parse_topic(topic) {
            Ok(Parsed::Message(parsed)) => parsed,
            Ok(Parsed::Ignored) => return Decoded::default(),
            Err((gateway, reason)) => {
                let kind = if reason.starts_with("the certificate") {
                    RejectionKind::Acl
                } else {
                    RejectionKind::Topic
                };
                return Decoded {
                    gateway: gateway.unwrap_or_default().to_owned(),
                    rejections: vec![rejection(topic, gateway, payload.to_vec(), reason, kind)],
                    ..Decoded::default()
                };
            }
        };
        let mut message = Message {
            sessions: self,
            topic,
            raw: payload,
            cx,
            at: &topic_,
            decoded: Decoded {
                gateway: topic_.node.to_owned(),
                ..Decoded::default()
            },
        };
        let payload = match Payload::decode(payload) {
            Ok(payload) => payload,
            Err(err) => {
                message.whole(
                    RejectionKind::Payload,
                    format!("{}: not a Sparkplug B payload: {err}", topic_.kind.name()),
                );
                return message.decoded;
            }
        };
        if payload.metrics.len() > self.config.max_metrics_per_payload {
            message.whole(
                RejectionKind::Bound,
                format!(
                    "{} metrics in one payload, more than ingest.sparkplug.max_metrics_per_payload ({})",
                    payload.metrics.len(),
                    self.config.max_metrics_per_payload
                ),
            );
            return message.decoded;
        }
        message.handle(payload, follow);
        message.decoded
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeKey, Node>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an `NCMD` rebirth request, at most one per node every
    /// `rebirth_interval_secs`.
    fn ask_rebirth(&self, at: &Topic<'_>, now: DateTime<Utc>) {
        if !self.config.rebirth {
            return;
        }
        let key = (at.group.to_owned(), at.node.to_owned());
        let interval = Duration::from_secs(self.config.rebirth_interval_secs);
        {
            let mut asked = self.asked.lock().unwrap_or_else(|e| e.into_inner());
            if asked
                .get(&key)
                .is_some_and(|last| last.elapsed() < interval)
            {
                return;
            }
            if asked.len() >= self.config.max_nodes {
                asked.retain(|_, last| last.elapsed() < interval);
            }
            if asked.len() >= self.config.max_nodes {
                return;
            }
            asked.insert(key, Instant::now());
        }
        let command = Command {
            topic: format!("{}{NAMESPACE}/{}/NCMD/{}", at.prefix, at.group, at.node),
            payload: proto::rebirth_request(now.timestamp_millis().max(0) as u64).encode_to_vec(),
        };
        match self.commands.try_send(command) {
            Ok(()) => {
                self.metrics
                    .sparkplug_rebirth_requests
                    .fetch_add(1, Relaxed);
                tracing::info!(
                    group = at.group,
                    edge_node = at.node,
                    "asking a Sparkplug B edge node to rebirth"
                );
            }
            Err(_) => {
                self.metrics
                    .sparkplug_commands_dropped
                    .fetch_add(1, Relaxed);
            }
        }
    }
}

/// One message being decoded.
struct Message<'a> {
    sessions: &'a Sessions,
    topic: &'a str,
    raw: &'a [u8],
    cx: &'a DecodeContext,
    at: &'a Topic<'a>,
    decoded: Decoded,
}

impl Message<'_> {
    fn config(&self) -> &SparkplugConfig {
        &self.sessions.config
    }

    /// A rejection of part of the message (`payload`: that part's bytes;
    /// empty: the whole message's).
    fn reject(&mut self, kind: RejectionKind, payload: Vec<u8>, reason: String) {
        let reason = format!("{}: {reason}", self.at.kind.name());
        let payload = if payload.is_empty() {
            self.raw.to_vec()
        } else {
            payload
        };
        self.decoded.rejections.push(Rejection {
            topic: self.topic.to_owned(),
            gateway: Some(self.at.node.to_owned()),
            payload,
            reason,
            kind,
        });
    }

    /// A rejection of the whole message, which keeps its payload.
    fn whole(&mut self, kind: RejectionKind, reason: String) {
        self.decoded.rejections.push(rejection(
            self.topic,
            Some(self.at.node),
            self.raw.to_vec(),
            reason,
            kind,
        ));
    }

    fn key(&self) -> NodeKey {
        (self.at.group.to_owned(), self.at.node.to_owned())
    }

    fn handle(&mut self, payload: Payload, follow: bool) {
        match self.at.kind {
            Kind::NBirth => self.node_birth(payload, follow),
            Kind::NDeath => self.node_death(&payload, follow),
            Kind::DBirth | Kind::NData | Kind::DData | Kind::DDeath => {
                self.in_session(payload, follow)
            }
        }
    }

    fn node_birth(&mut self, payload: Payload, follow: bool) {
        let bd_seq = payload
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(proto::BD_SEQ_METRIC))
            .and_then(|m| match m.value {
                Some(proto::Value::LongValue(v)) => Some(v),
                Some(proto::Value::IntValue(v)) => Some(u64::from(v)),
                _ => None,
            });
        let seq = payload.seq.unwrap_or(0);
        if seq > 255 {
            self.whole(
                RejectionKind::Payload,
                format!("NBIRTH: seq {seq} is not 0 to 255"),
            );
            return;
        }
        let own = self.declare(&payload, None);
        self.decoded.status = Some(GatewayStatus::Online);
        if !follow {
            return;
        }
        let mut nodes = self.sessions.lock();
        let key = self.key();
        if !nodes.contains_key(&key) && nodes.len() >= self.config().max_nodes {
            drop(nodes);
            self.decoded.readings.clear();
            self.decoded.status = None;
            self.whole(
                RejectionKind::Bound,
                format!(
                    "NBIRTH: {} edge nodes already have a session \
                     (ingest.sparkplug.max_nodes): this one is not followed",
                    self.config().max_nodes
                ),
            );
            return;
        }
        nodes.insert(
            key,
            Node {
                bd_seq,
                seq: seq as u8,
                own,
                devices: HashMap::new(),
                dead_devices: HashSet::new(),
            },
        );
        self.sessions
            .metrics
            .sparkplug_nodes
            .store(nodes.len() as i64, Relaxed);
    }

    fn node_death(&mut self, payload: &Payload, follow: bool) {
        let bd_seq = payload
            .metrics
            .iter()
            .find(|m| m.name.as_deref() == Some(proto::BD_SEQ_METRIC))
            .and_then(|m| match m.value {
                Some(proto::Value::LongValue(v)) => Some(v),
                Some(proto::Value::IntValue(v)) => Some(u64::from(v)),
                _ => None,
            });
        if !follow {
            self.decoded.status = Some(GatewayStatus::Offline);
            return;
        }
        let mut nodes = self.sessions.lock();
        let key = self.key();
        let current = nodes.get(&key).and_then(|node| node.bd_seq);
        match (current, bd_seq) {
            (Some(current), Some(dead)) if current != dead => {
                drop(nodes);
                self.whole(
                    RejectionKind::Sequence,
                    format!(
                        "NDEATH: bdSeq {dead} is not the current birth's ({current}): \
                         the will of an earlier session, ignored"
                    ),
                );
            }
            _ => {
                nodes.remove(&key);
                self.sessions
                    .metrics
                    .sparkplug_nodes
                    .store(nodes.len() as i64, Relaxed);
                self.decoded.status = Some(GatewayStatus::Offline);
            }
        }
    }

    /// DBIRTH, NDATA, DDATA and DDEATH: messages of a born node's session.
    fn in_session(&mut self, payload: Payload, follow: bool) {
        let key = self.key();
        let device = self.at.device;
        let mut nodes = self.sessions.lock();
        let Some(node) = nodes.get_mut(&key) else {
            drop(nodes);
            self.whole(
                RejectionKind::Payload,
                format!(
                    "{} before the edge node's NBIRTH (or after its NDEATH): its metrics are \
                     unknown; the node is asked to rebirth",
                    self.at.kind.name()
                ),
            );
            if follow {
                self.sessions.ask_rebirth(self.at, self.cx.received_at);
            }
            return;
        };
        let mut gap = None;
        if follow {
            let due = node.seq.wrapping_add(1);
            match payload.seq {
                Some(seq) if seq == u64::from(due) => node.seq = due,
                Some(seq) if seq <= 255 => {
                    gap = Some(format!(
                        "seq {seq} where {due} was due: {} messages lost or out of order; \
                         the node is asked to rebirth",
                        (seq as u8).wrapping_sub(due)
                    ));
                    node.seq = seq as u8;
                }
                other => {
                    gap = Some(format!(
                        "seq {} is not 0 to 255; the node is asked to rebirth",
                        other.map_or("missing".to_owned(), |seq| seq.to_string())
                    ));
                }
            }
        }
        match self.at.kind {
            Kind::DBirth => {
                let Some(device) = device else { return };
                let known = node.devices.contains_key(device);
                let others = node.aliases() - node.devices.get(device).map_or(0, Declared::len);
                if follow && !known && node.devices.len() >= self.config().max_devices_per_node {
                    drop(nodes);
                    self.whole(
                        RejectionKind::Bound,
                        format!(
                            "edge node already has {} devices (ingest.sparkplug.max_devices_per_node): \
                             device `{device}` is not followed",
                            self.config().max_devices_per_node
                        ),
                    );
                } else {
                    drop(nodes);
                    let declared = self.declare_within(&payload, Some(device), others);
                    if follow {
                        let mut nodes = self.sessions.lock();
                        if let Some(node) = nodes.get_mut(&key) {
                            node.devices.insert(device.to_owned(), declared);
                            node.dead_devices.remove(device);
                            if node.dead_devices.is_empty() {
                                self.decoded.status = Some(GatewayStatus::Online);
                            }
                        }
                    }
                }
            }
            Kind::DDeath => {
                if let Some(device) = device
                    && follow
                {
                    node.devices.remove(device);
                    node.dead_devices.insert(device.to_owned());
                }
                drop(nodes);
                self.decoded.status = Some(GatewayStatus::Offline);
            }
            _ => {
                let declared = match device {
                    None => Some(&node.own),
                    Some(device) => node.devices.get(device),
                };
                match declared {
                    Some(declared) => {
                        let found: Vec<_> = payload
                            .metrics
                            .iter()
                            .enumerate()
                            .map(|(index, metric)| (index, lookup(declared, metric)))
                            .collect();
                        drop(nodes);
                        self.data(&payload, found);
                    }
                    None => {
                        drop(nodes);
                        self.whole(
                            RejectionKind::Payload,
                            format!(
                                "DDATA before device `{}`'s DBIRTH: its metrics are unknown; \
                                 the node is asked to rebirth",
                                device.unwrap_or_default()
                            ),
                        );
                        if follow {
                            self.sessions.ask_rebirth(self.at, self.cx.received_at);
                        }
                    }
                }
            }
        }
        if let Some(reason) = gap {
            self.sessions
                .metrics
                .sparkplug_sequence_gaps
                .fetch_add(1, Relaxed);
            tracing::warn!(
                group = self.at.group,
                edge_node = self.at.node,
                "Sparkplug B sequence broken: {reason}"
            );
            self.whole(
                RejectionKind::Sequence,
                format!("{}: {reason}", self.at.kind.name()),
            );
            self.sessions.ask_rebirth(self.at, self.cx.received_at);
        }
    }

    fn declare(&mut self, payload: &Payload, device: Option<&str>) -> Declared {
        self.declare_within(payload, device, 0)
    }

    /// The metrics a birth declares, within the node's alias bound
    /// (`others`: what its other devices already declared), and the
    /// readings of the values it carries.
    fn declare_within(
        &mut self,
        payload: &Payload,
        device: Option<&str>,
        others: usize,
    ) -> Declared {
        let mut declared = Declared::default();
        let mut unmapped = Vec::new();
        let mut readings = Vec::new();
        for (index, metric) in payload.metrics.iter().enumerate() {
            let Some(name) = metric.name.as_deref() else {
                self.reject(
                    RejectionKind::Reading,
                    metric.encode_to_vec(),
                    format!("metrics[{index}]: a birth must name every metric"),
                );
                continue;
            };
            let channel = match map_metric(self.config(), self.at.group, self.at.node, device, name)
            {
                // Declared, so that its data is known and ignored.
                Mapped::Internal => None,
                Mapped::Channel(channel) => Some(channel),
                Mapped::Unmapped(reason) => {
                    unmapped.push(reason);
                    None
                }
            };
            let datatype = metric.datatype.unwrap_or(0);
            let channel = match channel {
                Some(_) if !proto::datatype::is_number(datatype) => {
                    unmapped.push(format!(
                        "`{name}`: datatype {} is not a number",
                        proto::datatype::name(datatype)
                    ));
                    None
                }
                channel => channel,
            };
            if declared.by_name.contains_key(name) {
                self.reject(
                    RejectionKind::Reading,
                    metric.encode_to_vec(),
                    format!("metrics[{index}]: `{name}` is declared twice"),
                );
                continue;
            }
            if others + declared.len() >= self.config().max_aliases_per_node {
                self.reject(
                    RejectionKind::Bound,
                    metric.encode_to_vec(),
                    format!(
                        "metrics[{index}]: the edge node already declares {} metrics \
                         (ingest.sparkplug.max_aliases_per_node): `{name}` is not followed",
                        self.config().max_aliases_per_node
                    ),
                );
                continue;
            }
            let known = Arc::new(Known {
                name: name.to_owned(),
                datatype,
                channel,
            });
            if let Some(alias) = metric.alias {
                if let Some(other) = declared.by_alias.get(&alias) {
                    let other = other.name.clone();
                    self.reject(
                        RejectionKind::Reading,
                        metric.encode_to_vec(),
                        format!(
                            "metrics[{index}]: alias {alias} of `{name}` is already `{other}`'s"
                        ),
                    );
                    continue;
                }
                declared.by_alias.insert(alias, known.clone());
            }
            declared.by_name.insert(name.to_owned(), known.clone());
            readings.push((index, known));
        }
        if !unmapped.is_empty() {
            let count = unmapped.len();
            unmapped.truncate(20);
            let more = count - unmapped.len();
            self.reject(
                RejectionKind::Reading,
                Vec::new(),
                format!(
                    "{count} metrics map to no channel and are ignored: {}{}",
                    unmapped.join("; "),
                    if more > 0 {
                        format!("; and {more} more")
                    } else {
                        String::new()
                    }
                ),
            );
        }
        self.data(
            payload,
            readings
                .into_iter()
                .map(|(index, known)| (index, Ok(known)))
                .collect(),
        );
        declared
    }

    /// The readings of a message's metrics, each found at birth (or the
    /// reason it was not).
    fn data(&mut self, payload: &Payload, found: Vec<(usize, Result<Arc<Known>, String>)>) {
        for (index, known) in found {
            let metric = &payload.metrics[index];
            let known = match known {
                Ok(known) => known,
                Err(reason) => {
                    self.reject(
                        RejectionKind::Reading,
                        metric.encode_to_vec(),
                        format!("metrics[{index}]: {reason}"),
                    );
                    continue;
                }
            };
            let Some(channel) = &known.channel else {
                continue;
            };
            if metric.is_null == Some(true) {
                continue;
            }
            if let Some(datatype) = metric.datatype
                && datatype != known.datatype
            {
                self.reject(
                    RejectionKind::Reading,
                    metric.encode_to_vec(),
                    format!(
                        "metrics[{index}] (`{}`): datatype {} where the birth declared {}",
                        known.name,
                        proto::datatype::name(datatype),
                        proto::datatype::name(known.datatype)
                    ),
                );
                continue;
            }
            let value = match &metric.value {
                Some(value) => proto::number(known.datatype, value),
                None => Err("no value (data sets, templates and other types are not read)".into()),
            };
            let ts = match metric.timestamp.or(payload.timestamp) {
                Some(ms) => match i64::try_from(ms)
                    .ok()
                    .and_then(DateTime::from_timestamp_millis)
                {
                    Some(ts) => check_ts(ts, self.cx),
                    None => Err(format!("timestamp {ms} is out of range")),
                },
                None => Ok(self.cx.received_at),
            };
            match (value, ts) {
                (Ok(value), Ok(ts)) => self.decoded.readings.push(DecodedReading {
                    channel: channel.clone(),
                    ts: ts.trunc_subsecs(6),
                    value,
                }),
                (Err(reason), _) | (_, Err(reason)) => self.reject(
                    RejectionKind::Reading,
                    metric.encode_to_vec(),
                    format!("metrics[{index}] (`{}`): {reason}", known.name),
                ),
            }
        }
    }
}

/// The birth's declaration of a data message's metric, by alias or name.
fn lookup(declared: &Declared, metric: &Metric) -> Result<Arc<Known>, String> {
    let found = match (metric.alias, metric.name.as_deref()) {
        (Some(alias), _) => declared
            .by_alias
            .get(&alias)
            .ok_or_else(|| format!("alias {alias} was not declared at birth")),
        (None, Some(name)) => declared
            .by_name
            .get(name)
            .ok_or_else(|| format!("metric `{name}` was not declared at birth")),
        (None, None) => Err("a metric needs an alias or a name".into()),
    };
    found.cloned()
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
