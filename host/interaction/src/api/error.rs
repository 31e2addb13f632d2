//! API errors as Argo Server sends them: the gRPC-gateway body
//! `{"code": <grpc code>, "message": "…"}` with the matching HTTP status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use weft_engine::runtime::{EngineError, StoreError, SubmitError};

/// Every way an API call can fail. Each variant maps to one gRPC code and one
/// HTTP status, as Argo's gRPC gateway maps them.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// gRPC 3 `InvalidArgument`, HTTP 400: malformed JSON, lint errors, bad selectors.
    #[error("{0}")]
    Invalid(String),
    /// gRPC 5 `NotFound`, HTTP 404.
    #[error("{0}")]
    NotFound(String),
    /// gRPC 6 `AlreadyExists`, HTTP 409.
    #[error("{0}")]
    AlreadyExists(String),
    /// gRPC 16 `Unauthenticated`, HTTP 401: no or unknown bearer token.
    #[error("{0}")]
    Unauthenticated(String),
    /// gRPC 7 `PermissionDenied`, HTTP 403: the token may not do this here.
    #[error("{0}")]
    Forbidden(String),
    /// gRPC 9 `FailedPrecondition`, HTTP 400: e.g. retrying a running workflow.
    #[error("{0}")]
    Precondition(String),
    /// gRPC 8 `ResourceExhausted`, HTTP 413: the body is larger than the limit.
    #[error("{0}")]
    TooLarge(String),
    /// gRPC 12 `Unimplemented`, HTTP 501.
    #[error("{0}")]
    Unimplemented(String),
    /// gRPC 14 `Unavailable`, HTTP 503: the engine is shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// gRPC 13 `Internal`, HTTP 500: store or engine failures.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// (HTTP status, gRPC code).
    pub fn codes(&self) -> (StatusCode, u16) {
        match self {
            ApiError::Invalid(_) => (StatusCode::BAD_REQUEST, 3),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, 5),
            ApiError::AlreadyExists(_) => (StatusCode::CONFLICT, 6),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, 7),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, 8),
            ApiError::Precondition(_) => (StatusCode::BAD_REQUEST, 9),
            ApiError::Unimplemented(_) => (StatusCode::NOT_IMPLEMENTED, 12),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, 13),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, 14),
            ApiError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, 16),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.codes();
        if status.is_server_error() {
            tracing::warn!(error = %self, "API call failed");
        }
        let body = Json(json!({"code": code, "message": self.to_string(), "details": []}));
        (status, body).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::AlreadyExists { .. } => ApiError::AlreadyExists(e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Invalid(m) => ApiError::Invalid(m),
            SubmitError::Store(s) => s.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Submit(s) => s.into(),
            EngineError::Store(s) => s.into(),
            EngineError::Invalid(m) => ApiError::Invalid(m),
            EngineError::NotFound(n) => ApiError::NotFound(format!("workflow {n:?} not found")),
            EngineError::Stopped => ApiError::Unavailable("the engine is shutting down".into()),
            #[allow(unreachable_patterns)]
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The `Result` of API handlers.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_grpc_gateway() {
        assert_eq!(ApiError::NotFound(String::new()).codes().1, 5);
        assert_eq!(
            ApiError::AlreadyExists(String::new()).codes().0,
            StatusCode::CONFLICT
        );
        assert_eq!(
            ApiError::Unauthenticated(String::new()).codes(),
            (StatusCode::UNAUTHORIZED, 16)
        );
    }
}
