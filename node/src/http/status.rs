//! `GET /status`: the cluster as an operator's page — members, each
//! deployment's cluster-wide figures, the counters and this node's gossip
//! figures. One self-contained HTML document (no external assets) that
//! reloads itself every few seconds. Open without a key, like the health
//! endpoints, so it shows nothing secret: no keys, no prompts, no config.

use std::fmt::Write;

use axum::extract::State;
use axum::response::Html;

use super::AppState;
use crate::cluster::{GossipFigures, Member};

const REFRESH_SECONDS: u32 = 2;

pub async fn page(State(state): State<AppState>) -> Html<String> {
    let (cluster_id, node_id, members, gossip) = match &state.cluster {
        Some(cluster) => (
            cluster.cluster_id().to_owned(),
            cluster.self_node_id().to_owned(),
            cluster.members().await,
            Some(cluster.gossip_figures().await),
        ),
        None => (
            "(none)".to_owned(),
            state.ledger.contributor().to_owned(),
            Vec::new(),
            None,
        ),
    };
    let mut html = String::with_capacity(8 * 1024);
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>Chorus · {node}</title><style>{STYLE}</style></head><body>\
         <h1>Chorus cluster <code>{cluster}</code></h1>\
         <p>Seen from <b>{node}</b> · version {version} · refreshes every {REFRESH_SECONDS} s</p>",
        node = escape(&node_id),
        cluster = escape(&cluster_id),
        version = env!("CARGO_PKG_VERSION"),
    );
    members_table(&mut html, &members);
    deployments_table(&mut html, &state);
    counters_table(&mut html, &state);
    if let Some(gossip) = gossip {
        gossip_table(&mut html, &gossip);
    }
    html.push_str("</body></html>");
    Html(html)
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:0 0 2em}th,td{padding:4px 10px;border-bottom:1px solid #ddd;text-align:left}\
th{background:#f4f4f4}.alive{color:#17803d;font-weight:600}.dead{color:#b3261e;font-weight:600}\
.healthy{color:#17803d}.degraded{color:#a86500}.failing{color:#b3261e;font-weight:600}code{font-size:13px}";

fn members_table(html: &mut String, members: &[Member]) {
    html.push_str("<h2>Members</h2>");
    if members.is_empty() {
        html.push_str("<p>This node runs without a <code>[cluster]</code> section.</p>");
        return;
    }
    html.push_str(
        "<table id=\"members\"><tr><th>node</th><th>state</th><th>HTTP</th><th>gossip</th>\
         <th>generation</th><th>heartbeat age</th><th>uptime</th><th>version</th></tr>",
    );
    for member in members {
        let (class, label) = if member.alive {
            ("alive", "alive")
        } else {
            ("dead", "dead")
        };
        let _ = write!(
            html,
            "<tr><td><code>{node}</code>{me}</td><td class=\"{class}\">{label}</td><td>{http}</td><td>{gossip}</td>\
             <td>{generation}</td><td>{age}</td><td>{uptime}</td><td>{version}</td></tr>",
            node = escape(&member.node_id),
            me = if member.is_self { " (this node)" } else { "" },
            http = escape(member.http_addr.as_deref().unwrap_or("–")),
            gossip = escape(&member.gossip_addr),
            generation = member.generation,
            age = member.heartbeat_age_ms.map_or("–".to_owned(), |ms| format!("{ms} ms")),
            uptime = member.uptime_s.map_or("–".to_owned(), |s| format!("{s} s")),
            version = escape(member.version.as_deref().unwrap_or("–")),
        );
    }
    html.push_str("</table>");
}

fn deployments_table(html: &mut String, state: &AppState) {
    html.push_str(
        "<h2>Deployments</h2><table id=\"deployments\"><tr><th>deployment</th><th>health</th><th>in flight</th>\
         <th>calls</th><th>errors</th><th>latency</th><th>TTFT</th><th>nodes</th></tr>",
    );
    let ms = |value: Option<f64>| value.map_or("–".to_owned(), |v| format!("{v:.1} ms"));
    for deployment in state.routes.deployments() {
        let local = deployment.stats();
        let (health, in_flight, finished, errors, latency, ttft, nodes) =
            match deployment.cluster_stats() {
                Some(cluster) => (
                    cluster.health,
                    cluster.in_flight,
                    cluster.finished,
                    cluster.errors,
                    cluster.latency_ms,
                    cluster.ttft_ms,
                    cluster.nodes,
                ),
                None => (
                    local.health(),
                    local.in_flight,
                    local.finished,
                    local.errors,
                    local.latency_ms,
                    local.ttft_ms,
                    1,
                ),
            };
        let health = health.as_str();
        let _ = write!(
            html,
            "<tr><td><code>{name}</code></td><td class=\"{health}\">{health}</td><td>{in_flight}</td><td>{finished}</td>\
             <td>{errors}</td><td>{latency}</td><td>{ttft}</td><td>{nodes}</td></tr>",
            name = escape(deployment.name()),
            latency = ms(latency),
            ttft = ms(ttft),
        );
    }
    html.push_str("</table>");
}

fn counters_table(html: &mut String, state: &AppState) {
    html.push_str("<h2>Counters (all nodes, since the store began)</h2><table id=\"counters\"><tr><th>counter</th><th>total</th></tr>");
    for (name, total) in state.ledger.totals() {
        let _ = write!(
            html,
            "<tr><td><code>{}</code></td><td>{total}</td></tr>",
            escape(&name)
        );
    }
    html.push_str("</table>");
}

fn gossip_table(html: &mut String, gossip: &GossipFigures) {
    let _ = write!(
        html,
        "<h2>Gossip on this node</h2><table id=\"gossip\">\
         <tr><th>live peers</th><td>{}</td></tr><tr><th>state size</th><td>{} bytes</td></tr>\
         <tr><th>packets sent / received</th><td>{} / {}</td></tr><tr><th>bytes sent / received</th><td>{} / {}</td></tr>\
         <tr><th>authentication failures</th><td>{}</td></tr><tr><th>other cluster</th><td>{}</td></tr>\
         <tr><th>malformed / undecodable</th><td>{} / {}</td></tr></table>",
        gossip.peers,
        gossip.state_bytes,
        gossip.packets_sent,
        gossip.packets_received,
        gossip.bytes_sent,
        gossip.bytes_received,
        gossip.auth_failures,
        gossip.other_cluster,
        gossip.malformed,
        gossip.undecodable,
    );
}

/// Text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
