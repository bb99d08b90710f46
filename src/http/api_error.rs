//! What the JSON APIs under `/api/v1` share: their bearer-token check and their errors, RFC 9457
//! problem details (`application/problem+json`: `type`, `title`, `status`, `detail`) with the
//! stable `error` code and the `message` of earlier versions as extension members.

use actix_web::{
    HttpRequest, HttpResponse, ResponseError,
    http::{StatusCode, header},
};
use serde::Serialize;

use crate::{
    domain::{access::BearerToken, ids::UnixMs},
    http::AppState,
    queue::JobError,
    store::StoreError,
    telemetry::Chain,
};

/// Which API a request is for: each has its own token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/api/v1/…` for the site that owns the feeds (`HERALD_PRODUCER_TOKEN`).
    Producer,
    /// `/api/v1/admin/…` for the hub's operators (`HERALD_ADMIN_TOKEN`).
    Admin,
}

impl Api {
    pub fn name(self) -> &'static str {
        match self {
            Self::Producer => "producer",
            Self::Admin => "admin",
        }
    }

    pub fn setting(self) -> &'static str {
        match self {
            Self::Producer => "HERALD_PRODUCER_TOKEN",
            Self::Admin => "HERALD_ADMIN_TOKEN",
        }
    }

    fn token(self, ctx: &AppState) -> Option<&BearerToken> {
        match self {
            Self::Producer => ctx.access.producer_token.as_ref(),
            Self::Admin => ctx.access.admin_token.as_ref(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the {} API is disabled: set {} to enable it", .0.name(), .0.setting())]
    Disabled(Api),
    #[error("an Authorization: Bearer <{} token> header is required", .0.name())]
    Unauthorized(Api),
    #[error("the {} token is not valid", .0.name())]
    Forbidden(Api),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    /// What was asked for existed, and is gone (events pruned by retention).
    #[error("{0}")]
    Gone(String),
    #[error("the content is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Busy(&'static str),
    /// Something failed inside the hub: the client is told no more than that; the cause is
    /// logged, once, with its chain.
    #[error("internal error")]
    Internal(#[source] InternalCause),
    #[error("too many requests from your address; retry in {0} s")]
    RateLimited(u64),
    /// The body did not arrive within the client timeout.
    #[error("the request body did not arrive in time")]
    SlowBody,
    /// The endpoint takes only the methods listed.
    #[error("this endpoint answers {0}")]
    MethodNotAllowed(&'static str),
}

/// The body of every error answer: RFC 9457 problem details.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Always `about:blank`: the status says which kind of problem it is.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's name (`Bad Request`).
    pub title: &'static str,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What went wrong, for people.
    pub detail: String,
    /// A stable code: `disabled`, `unauthorized`, `forbidden`, `bad_request`, `not_found`,
    /// `too_large`, `busy`, `internal`, `rate_limited`, `method_not_allowed`, `timeout`,
    /// and on live connections `too_many_connections` and the token refusals.
    pub error: &'static str,
    /// The same as `detail` (the field of earlier versions).
    pub message: String,
}

/// The media type of error answers.
pub const PROBLEM_JSON: &str = "application/problem+json";

impl ErrorBody {
    pub fn new(status: StatusCode, error: &'static str, message: String) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: message.clone(),
            error,
            message,
        }
    }

    /// The answer, on a response already given its status and headers.
    pub fn respond(self, mut response: actix_web::HttpResponseBuilder) -> HttpResponse {
        response
            .content_type(PROBLEM_JSON)
            .body(serde_json::to_string(&self).unwrap_or_default())
    }
}

impl ApiError {
    fn code(&self) -> &'static str {
        match self {
            Self::Disabled(_) => "disabled",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::BadRequest(_) => "bad_request",
            Self::NotFound(_) => "not_found",
            Self::Gone(_) => "gone",
            Self::TooLarge(_) => "too_large",
            Self::Busy(_) => "busy",
            Self::Internal(_) => "internal",
            Self::RateLimited(_) => "rate_limited",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::SlowBody => "timeout",
        }
    }
}

/// What failed inside the hub, behind an [`ApiError::Internal`].
#[derive(Debug, thiserror::Error)]
pub enum InternalCause {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Job(JobError),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        Self::Internal(InternalCause::Store(e))
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Busy(m) => Self::Busy(m),
            JobError::Store(e) => Self::Internal(InternalCause::Store(e)),
            other => Self::Internal(InternalCause::Job(other)),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Disabled(_) | Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Gone(_) => StatusCode::GONE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::SlowBody => StatusCode::REQUEST_TIMEOUT,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(error = %Chain(cause), "API request failed");
        }
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, Self::Unauthorized(_)) {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if matches!(self, Self::Busy(_)) {
            response.insert_header((header::RETRY_AFTER, "1"));
        }
        if let Self::RateLimited(seconds) = self {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Self::MethodNotAllowed(allow) = self {
            response.insert_header((header::ALLOW, *allow));
        }
        ErrorBody::new(self.status_code(), self.code(), self.to_string()).respond(response)
    }
}

/// Checks the request's `Authorization: Bearer` against the API's token (in constant time).
/// `http::guard` applies it to every request under `/api/v1` before routing (the handlers do
/// not check again); the pages use it to recognise the producer.
pub fn authorize(req: &HttpRequest, ctx: &AppState, api: Api) -> Result<(), ApiError> {
    let Some(token) = api.token(ctx) else {
        return Err(ApiError::Disabled(api));
    };
    match req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        None => Err(ApiError::Unauthorized(api)),
        Some(value) if token.authorizes(Some(value)) => Ok(()),
        Some(_) => Err(ApiError::Forbidden(api)),
    }
}

/// A JSON body, with its parse errors as API errors.
pub fn json_body<T>(
    body: Result<actix_web::web::Json<T>, actix_web::Error>,
) -> Result<T, ApiError> {
    body.map(actix_web::web::Json::into_inner)
        .map_err(
            |e| match e.as_error::<actix_web::error::JsonPayloadError>() {
                Some(actix_web::error::JsonPayloadError::Payload(p))
                    if super::guard::is_timed_out(p) =>
                {
                    ApiError::SlowBody
                }
                _ => ApiError::BadRequest(format!("the JSON body is not valid: {e}")),
            },
        )
}

/// An id from the path, with its parse error as an API error.
pub fn path_id<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::BadRequest(format!("a {what} id is a number, not {raw:?}")))
}

/// Ids in a JSON body: whole numbers from 1, also when written with a fraction of zero (`7.0`, which
/// JSON Schema counts as an integer, and so does the OpenAPI document).
pub fn whole_ids<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    use serde::{Deserialize, de::Error};
    let numbers = Vec::<serde_json::Number>::deserialize(deserializer)?;
    numbers
        .into_iter()
        .map(|n| {
            let whole = n.as_i64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            });
            let whole = whole
                .filter(|n| *n >= 1)
                .ok_or_else(|| D::Error::custom(format!("{n} is not an id (ids are 1 or more)")))?;
            serde_json::from_value(serde_json::Value::from(whole)).map_err(D::Error::custom)
        })
        .collect()
}

/// How the APIs' query strings are read: a string that does not parse (a parameter given
/// twice, a number that is none) is a JSON `bad_request`, as every API error is.
pub fn query_config() -> actix_web::web::QueryConfig {
    actix_web::web::QueryConfig::default().error_handler(|e, _| {
        ApiError::BadRequest(format!("the query string is not valid: {e}")).into()
    })
}

/// A query string, with its parse errors as API errors.
pub fn query<T>(q: Result<actix_web::web::Query<T>, actix_web::Error>) -> Result<T, ApiError> {
    q.map(actix_web::web::Query::into_inner)
        .map_err(|e| ApiError::BadRequest(format!("the query is not valid: {e}")))
}

/// An instant as RFC 3339, as the APIs show them.
pub fn rfc3339(at: UnixMs) -> String {
    chrono::DateTime::from_timestamp_millis(at.as_millis())
        .map(|t| t.to_rfc3339())
        .unwrap_or_default()
}
