//! Typed endpoints for the everyday operations of the three domains.

pub fn routes(_cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {}
