//! The cluster as clients see it: `/v1/cluster/status`, and read
//! consistency.
//!
//! **Reads.** Every node serves reads from its own applied state: by
//! default a read sees every block this node has applied (and never one a
//! crash could take back), which may trail the leader by a few entries.
//! `?consistency=linearizable` on any `GET` first asks the leader for
//! Raft's read index and waits until this node has applied it, so the read
//! sees every write acknowledged anywhere before it began (503
//! `NODE:NO_LEADER` when no leader answers in time). `consistency=local`
//! is the default. The middleware takes the parameter out of the query
//! before the route sees it.
//!
//! **Writes.** Any node accepts writes: a follower forwards them to the
//! leader over the cluster transport and answers once the block carrying
//! them is applied and durable on the follower itself. Clients need no
//! redirect; `leader_address` in `/v1/cluster/status` names the leader for
//! clients that prefer to write there.
//!
//! **Membership** (admins): `POST /v1/cluster/members` adds a node (started
//! with `--join`) as a learner, waits until it has caught up (from a
//! snapshot and the log), then makes it a voter through joint consensus;
//! `DELETE /v1/cluster/members/{id}` removes one (a leader hands over
//! first). Both answer once this node has applied the new configuration,
//! and both may be repeated: a change half done is completed.

use super::auth::Caller;
use super::problem::{ApiError, Problem};
use super::Api;
use crate::cluster::runtime::{ClusterStatus, MembershipError};
use crate::node::Member;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{delete, get, post, web, ResponseError};
use domains::membership::Role;
use std::time::Duration;

/// This node's Raft state and its view of the other members.
#[utoipa::path(
    tag = "ops",
    responses((status = 200, description = "Cluster status", body = ClusterStatus))
)]
#[get("/v1/cluster/status")]
pub async fn cluster_status(api: web::Data<Api>) -> web::Json<ClusterStatus> {
    web::Json(match &api.cluster {
        Some(c) => c.status(),
        None => embedded(&api),
    })
}

/// The embedded node is a cluster of one that leads at term 0, and its
/// "Raft index" is its height.
fn embedded(api: &Api) -> ClusterStatus {
    let s = api.status.read().map(|s| s.clone()).unwrap_or_default();
    let address = s.members.first().map(|m| m.address.clone());
    ClusterStatus {
        node_id: 1,
        role: "leader".into(),
        term: 0,
        leader: Some(1),
        leader_address: address,
        commit_index: s.height,
        applied_index: s.height,
        last_index: s.height,
        first_index: 1,
        height: s.height,
        caught_up: s.ready,
        voters: vec![1],
        learners: Vec::new(),
        joint: false,
        catching_up: false,
        members: s
            .members
            .into_iter()
            .map(|m| Member {
                height: s.height,
                applied_index: s.height,
                ..m
            })
            .collect(),
        failed: None,
    }
}

/// The query without `consistency`, and the value it had.
fn take_consistency(query: &str) -> (String, Option<String>) {
    let mut kept = Vec::new();
    let mut value = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("consistency", v)) => value = Some(v.to_string()),
            None if pair == "consistency" => value = Some(String::new()),
            _ => kept.push(pair),
        }
    }
    (kept.join("&"), value)
}

/// Handles `?consistency=` on reads (see the module's documentation).
pub async fn consistency(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let (rest, wanted) = take_consistency(req.query_string());
    let Some(wanted) = wanted else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let path = req.path().to_string();
    let uri = if rest.is_empty() {
        path
    } else {
        format!("{path}?{rest}")
    };
    if let Ok(uri) = uri.parse::<actix_web::http::Uri>() {
        req.match_info_mut().get_mut().update(&uri);
        req.head_mut().uri = uri;
    }
    let refuse = |req: ServiceRequest, e: ApiError| {
        let (http, _) = req.into_parts();
        Ok(ServiceResponse::new(http, e.error_response()))
    };
    match wanted.as_str() {
        "local" => {}
        "linearizable" if req.method() == Method::GET => {
            let barrier = req.app_data::<web::Data<Api>>().map(|api| api.node.clone());
            if let Some(node) = barrier {
                if let Err(e) = node.linearize().await {
                    return refuse(req, ApiError::from(e));
                }
            }
        }
        "linearizable" => {
            return refuse(
                req,
                ApiError::bad_request(
                    "API:BAD_CONSISTENCY",
                    "consistency applies to reads (GET); writes are always ordered by the leader",
                ),
            )
        }
        other => {
            return refuse(
                req,
                ApiError::bad_request(
                    "API:BAD_CONSISTENCY",
                    format!("consistency `{other}`: expected `local` or `linearizable`"),
                ),
            )
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

/// How long a membership change waits by default, and at most.
const MEMBERSHIP_WAIT_S: u64 = 120;
const MEMBERSHIP_WAIT_MAX_S: u64 = 600;

/// A node to add to the cluster.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// Its node id: its cluster certificate names `node-ID.parledger`.
    pub node_id: u64,
    /// Where the members reach its cluster listener, `HOST:PORT`.
    pub address: String,
    /// Seconds to wait for it to catch up and become a voter (default 120,
    /// at most 600).
    pub wait_s: Option<u64>,
}

/// How long to wait for a membership change.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct MembershipWait {
    /// Seconds (default 120, at most 600).
    pub wait_s: Option<u64>,
}

fn wait(s: Option<u64>) -> Duration {
    Duration::from_secs(
        s.unwrap_or(MEMBERSHIP_WAIT_S)
            .clamp(1, MEMBERSHIP_WAIT_MAX_S),
    )
}

impl From<MembershipError> for ApiError {
    fn from(e: MembershipError) -> Self {
        let status = match &e {
            MembershipError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            MembershipError::NotAMember(_) => StatusCode::NOT_FOUND,
            MembershipError::LastVoter(_) => StatusCode::CONFLICT,
            MembershipError::NoLeader
            | MembershipError::LearnerBehind { .. }
            | MembershipError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

fn cluster(api: &Api) -> Result<&crate::cluster::runtime::Cluster, ApiError> {
    api.cluster.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "CLUSTER:EMBEDDED",
            "this node runs alone (started without --node-id): it has no members to change",
        )
    })
}

/// Add a node to the cluster (admins): as a learner, then, once caught up,
/// as a voter. Start the node with `--join` first.
#[utoipa::path(
    tag = "ops",
    request_body = NewMember,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The node is a voter; the configuration as this node applied it", body = ClusterStatus),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not a cluster", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid node id or address", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No leader, not caught up or not applied in time: retry the same request", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/v1/cluster/members")]
pub async fn add_member(
    api: web::Data<Api>,
    caller: Caller,
    body: web::Json<NewMember>,
) -> Result<web::Json<ClusterStatus>, ApiError> {
    caller.require(&[Role::Admin])?;
    let b = body.into_inner();
    let cluster = cluster(&api)?;
    tracing::info!(node = b.node_id, address = %b.address, by = %caller.user, "adding a cluster member");
    Ok(web::Json(
        cluster
            .add_member(b.node_id, &b.address, wait(b.wait_s))
            .await?,
    ))
}

/// Remove a node from the cluster (admins). A leader hands leadership to
/// another voter first. Stop the node once it is removed.
#[utoipa::path(
    tag = "ops",
    params(("id" = u64, Path, description = "Node id"), MembershipWait),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Removed; the configuration as this node applied it", body = ClusterStatus),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Not a member", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The last voter, or not a cluster", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "No leader or not applied in time: retry the same request", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/v1/cluster/members/{id}")]
pub async fn remove_member(
    api: web::Data<Api>,
    caller: Caller,
    id: web::Path<u64>,
    query: web::Query<MembershipWait>,
) -> Result<web::Json<ClusterStatus>, ApiError> {
    caller.require(&[Role::Admin])?;
    let id = id.into_inner();
    let cluster = cluster(&api)?;
    tracing::info!(node = id, by = %caller.user, "removing a cluster member");
    Ok(web::Json(
        cluster.remove_member(id, wait(query.wait_s)).await?,
    ))
}

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(cluster_status)
        .service(add_member)
        .service(remove_member);
}

#[cfg(test)]
mod tests {
    use super::take_consistency;

    #[test]
    fn consistency_is_taken_out_of_the_query() {
        assert_eq!(take_consistency(""), (String::new(), None));
        assert_eq!(
            take_consistency("limit=5&after=x"),
            ("limit=5&after=x".into(), None)
        );
        assert_eq!(
            take_consistency("consistency=linearizable"),
            (String::new(), Some("linearizable".into()))
        );
        assert_eq!(
            take_consistency("limit=5&consistency=local&after=x"),
            ("limit=5&after=x".into(), Some("local".into()))
        );
        assert_eq!(
            take_consistency("consistency"),
            (String::new(), Some(String::new()))
        );
    }
}
