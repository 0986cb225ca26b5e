//! The panel's one error type, mapped to HTTP statuses. Internal details are logged, never
//! sent.

use poem::http::StatusCode;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};

/// The body of every error response.
#[derive(Debug, Object)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub detail: String,
    /// The field at fault, when there is one.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, malformed or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// No such resource (or not visible to this admin).
    #[error("{0} not found")]
    NotFound(String),
    /// A unique field already taken.
    #[error("{field} {value:?} already exists")]
    Conflict {
        /// Field name.
        field: String,
        /// Value.
        value: String,
    },
    /// The resource is not in a state that allows the request (409, no field).
    #[error("{0}")]
    WrongState(String),
    /// Input that fails validation.
    #[error("{field}: {message}")]
    Invalid {
        /// Field name.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Too many failed logins.
    #[error("too many failed logins; try again in {0} seconds")]
    Throttled(u64),
    /// Anything else (logged, reported as 500 without details).
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::Internal(e.into())
    }
}

impl ApiError {
    /// A validation error.
    pub fn invalid(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The error responses every endpoint may give.
#[derive(ApiResponse)]
pub enum ErrorResponse {
    /// Invalid input.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
    /// Missing or bad credentials.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Not allowed.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Not found.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// Already exists, or not in a state that allows the request.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// Throttled.
    #[oai(status = 429)]
    Throttled(Json<ErrorBody>),
    /// Server error.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

impl From<ApiError> for ErrorResponse {
    fn from(e: ApiError) -> Self {
        let body = |field: Option<String>| {
            Json(ErrorBody {
                detail: e.to_string(),
                field,
            })
        };
        match &e {
            ApiError::Unauthorized(_) => ErrorResponse::Unauthorized(body(None)),
            ApiError::Forbidden(_) => ErrorResponse::Forbidden(body(None)),
            ApiError::NotFound(_) => ErrorResponse::NotFound(body(None)),
            ApiError::Conflict { field, .. } => ErrorResponse::Conflict(body(Some(field.clone()))),
            ApiError::WrongState(_) => ErrorResponse::Conflict(body(None)),
            ApiError::Invalid { field, .. } => ErrorResponse::Invalid(body(Some(field.clone()))),
            ApiError::Throttled(_) => ErrorResponse::Throttled(body(None)),
            ApiError::Internal(inner) => {
                tracing::error!("internal error: {inner:#}");
                ErrorResponse::Internal(body(None))
            }
        }
    }
}

impl ErrorResponse {
    /// The status code (for tests and logs).
    pub fn status(&self) -> StatusCode {
        match self {
            ErrorResponse::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorResponse::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ErrorResponse::Forbidden(_) => StatusCode::FORBIDDEN,
            ErrorResponse::NotFound(_) => StatusCode::NOT_FOUND,
            ErrorResponse::Conflict(_) => StatusCode::CONFLICT,
            ErrorResponse::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ErrorResponse::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ErrorResponse>;
