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

use super::problem::ApiError;
use super::Api;
use crate::cluster::runtime::ClusterStatus;
use crate::node::Member;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{get, web, ResponseError};

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

pub fn routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(cluster_status);
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
