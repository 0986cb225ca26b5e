//! The REST API under `/api`, described by poem-openapi types (the spec is generated, never
//! hand-edited; `openapi/openapi.json` is a checked-in copy that a test keeps current).

pub mod admins;
pub mod hosts;
pub mod inbounds;
pub mod routing;
pub mod services;
pub mod settings;
pub mod subscription;
pub mod system;
pub mod users;
pub mod webhooks;

use poem_openapi::{OpenApiService, Tags};

/// API sections.
#[derive(Tags)]
pub enum ApiTags {
    /// Admins and their tokens.
    Admins,
    /// Proxy users.
    Users,
    /// Services: groups of inbounds.
    Services,
    /// Inbounds: the engine's listeners.
    Inbounds,
    /// Hosts: the addresses users are given for an inbound.
    Hosts,
    /// Subscriptions: what users' clients fetch (no token: the key is the credential).
    Subscription,
    /// System statistics and settings (subscription options, webhooks, routing rules).
    System,
}

/// Every API, as one service.
pub type Api = (
    admins::AdminApi,
    users::UserApi,
    services::ServiceApi,
    inbounds::InboundApi,
    system::SystemApi,
    hosts::HostApi,
    subscription::SubscriptionApi,
    webhooks::WebhookApi,
    settings::SettingsApi,
    routing::RoutingApi,
);

/// The OpenAPI service (also used to write `openapi/openapi.json`).
pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        (
            admins::AdminApi,
            users::UserApi,
            services::ServiceApi,
            inbounds::InboundApi,
            system::SystemApi,
            hosts::HostApi,
            subscription::SubscriptionApi,
            webhooks::WebhookApi,
            settings::SettingsApi,
            routing::RoutingApi,
        ),
        "Marzneshin",
        env!("CARGO_PKG_VERSION"),
    )
    .description("Proxy panel API: admins, users, services, inbounds, usage.")
    .server("/api")
}
