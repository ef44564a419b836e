//! The REST side of `PlaneSim`: authentication, throttling, faults and Plane API v1 routes.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use percent_encoding::percent_decode_str;

use crate::plane::hooks::{self, Pending};
use crate::plane::model::{self, Throttle, World};
use serde_json::Value;

use crate::plane::pyjson::{self, obj, text};
use crate::plane::{
    create_comment, state_change_hook, Inner, Mutation, MutationKind, RequestRecord,
};
use crate::server::{Reply, Request, Response};

/// Plane's `per_page` default and maximum (`plane/utils/paginator.py`).
const DEFAULT_PER_PAGE: usize = 1000;
const MAX_PER_PAGE: usize = 1000;

/// What a route produced.
struct Outcome {
    status: u16,
    body: Value,
    hooks: Vec<Pending>,
}

impl Outcome {
    fn ok(body: Value) -> Outcome {
        Outcome {
            status: 200,
            body,
            hooks: Vec::new(),
        }
    }

    fn error(status: u16, key: &str, message: impl Into<String>) -> Outcome {
        Outcome {
            status,
            body: obj(vec![(key, text(message))]),
            hooks: Vec::new(),
        }
    }

    fn page_not_found() -> Outcome {
        Outcome::error(404, "error", "Page not found.")
    }

    fn does_not_exist() -> Outcome {
        Outcome::error(404, "error", "The requested resource does not exist.")
    }

    fn no_permission() -> Outcome {
        Outcome::error(
            403,
            "detail",
            "You do not have permission to perform this action.",
        )
    }
}

pub(crate) async fn handle(inner: Arc<Inner>, request: Request) -> Reply {
    let latency = inner.faults().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let received = Instant::now();
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let (status, response, hooks) = respond(&inner, &request, received);
    let dropped = status.is_some() && {
        let mut faults = inner.faults();
        let drop_it = faults.drop_responses > 0;
        if drop_it {
            faults.drop_responses -= 1;
        }
        drop_it
    };
    inner.records().requests.push(RequestRecord {
        method,
        path,
        query,
        status: if dropped { None } else { status },
        at: received,
    });
    for hook in hooks {
        let inner = inner.clone();
        tokio::spawn(async move { hooks::deliver(&inner, hook).await });
    }
    if dropped {
        Reply::Drop
    } else {
        Reply::Respond(response)
    }
}

/// Authenticates, throttles, injects faults and routes. The status is `None` for answers that
/// must not count as applied (none today; kept for symmetry with the record).
fn respond(
    inner: &Inner,
    request: &Request,
    now: Instant,
) -> (Option<u16>, Response, Vec<Pending>) {
    let Some(rest) = request.uri().path().strip_prefix("/api/v1/") else {
        let outcome = Outcome::page_not_found();
        return (Some(outcome.status), render(&outcome, &[]), Vec::new());
    };
    let token = request
        .headers()
        .get("x-api-key")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let Some(token) = token.filter(|token| !token.is_empty()) else {
        let outcome = Outcome::error(
            401,
            "detail",
            "Authentication credentials were not provided.",
        );
        return (Some(401), render(&outcome, &[]), Vec::new());
    };
    let mut world = inner.world();
    let Some(user) = world.user_by_token(&token).map(|user| user.id.clone()) else {
        let outcome = Outcome::error(403, "detail", "Given API token is not valid");
        return (Some(403), render(&outcome, &[]), Vec::new());
    };
    {
        let mut faults = inner.faults();
        if faults.rate_limit_burst > 0 {
            faults.rate_limit_burst -= 1;
            return (
                Some(429),
                rate_limited(faults.burst_retry_after_secs),
                Vec::new(),
            );
        }
    }
    let (remaining, reset_in) = match world.rate.check(&token, now) {
        Throttle::Limited { retry_after_secs } => {
            return (Some(429), rate_limited(retry_after_secs), Vec::new())
        }
        Throttle::Allowed {
            remaining,
            reset_in,
        } => (remaining, reset_in),
    };
    let reset_at = SystemTime::now()
        .checked_add(reset_in)
        .unwrap_or_else(SystemTime::now);
    let reset_epoch = reset_at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let rate_headers = [
        ("X-RateLimit-Remaining", remaining.to_string()),
        ("X-RateLimit-Reset", reset_epoch.to_string()),
    ];
    if inner.faults().take_server_error() {
        let outcome = Outcome::error(500, "error", "Something went wrong please try again later");
        return (Some(500), render(&outcome, &rate_headers), Vec::new());
    }
    let query = parse_query(request.uri().query().unwrap_or(""));
    let outcome = route(
        inner,
        &mut world,
        &user,
        request.method().as_str(),
        rest,
        &query,
        request.body(),
    );
    let response = render(&outcome, &rate_headers);
    (Some(outcome.status), response, outcome.hooks)
}

fn rate_limited(retry_after_secs: u64) -> Response {
    let body = obj(vec![
        ("error_code", Value::from(5900)),
        ("error_message", text("RATE_LIMIT_EXCEEDED")),
    ]);
    let outcome = Outcome {
        status: 429,
        body,
        hooks: Vec::new(),
    };
    render(&outcome, &[("Retry-After", retry_after_secs.to_string())])
}

fn render(outcome: &Outcome, headers: &[(&str, String)]) -> Response {
    let mut builder = hyper::Response::builder()
        .status(outcome.status)
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(
            pyjson::to_compact_json(&outcome.body).into_bytes(),
        )))
        .expect("status and headers are valid")
}

fn route(
    inner: &Inner,
    world: &mut World,
    user: &str,
    method: &str,
    rest: &str,
    query: &[(String, String)],
    body: &Bytes,
) -> Outcome {
    // Plane's routes all end in `/`; `rest` is what follows `/api/v1/`.
    let Some(rest) = rest.strip_suffix('/') else {
        return Outcome::page_not_found();
    };
    let segments: Vec<&str> = rest.split('/').collect();
    let not_allowed = || Outcome::error(405, "detail", format!("Method \"{method}\" not allowed."));
    match segments.as_slice() {
        ["users", "me"] => match method {
            "GET" => Outcome::ok(world.user_lite(user)),
            _ => not_allowed(),
        },
        ["workspaces", slug, "projects", project, tail @ ..] => {
            if !model::is_uuid(project) {
                return Outcome::page_not_found();
            }
            if *slug != world.slug || world.project(project).is_none() {
                return Outcome::no_permission();
            }
            match tail {
                ["states"] => match method {
                    "GET" => list_states(world, project, query),
                    _ => not_allowed(),
                },
                ["work-items" | "issues"] => match method {
                    "GET" => list_items(world, project, query),
                    _ => not_allowed(),
                },
                ["work-items" | "issues", item] if model::is_uuid(item) => match method {
                    "GET" => get_item(world, project, item, query),
                    "PATCH" => patch_item(inner, world, user, project, item, body),
                    _ => not_allowed(),
                },
                ["work-items" | "issues", item, "comments"] if model::is_uuid(item) => match method
                {
                    "GET" => list_comments(world, project, item, query),
                    "POST" => post_comment(inner, world, user, project, item, body),
                    _ => not_allowed(),
                },
                _ => Outcome::page_not_found(),
            }
        }
        _ => Outcome::page_not_found(),
    }
}

fn list_states(world: &World, project: &str, query: &[(String, String)]) -> Outcome {
    let rows = world
        .states
        .iter()
        .filter(|state| state.project == project)
        .map(|state| world.state_json(state))
        .collect();
    paginated(rows, query)
}

fn list_items(world: &World, project: &str, query: &[(String, String)]) -> Outcome {
    let mut items: Vec<&model::Item> = world
        .items
        .iter()
        .filter(|item| item.project == project)
        .collect();
    let order_by = param(query, "order_by").unwrap_or("-created_at");
    let (descending, field) = match order_by.strip_prefix('-') {
        Some(field) => (true, field),
        None => (false, order_by),
    };
    items.sort_by(|a, b| {
        let ordering = match field {
            "updated_at" => a.updated_at.cmp(&b.updated_at),
            "sequence_id" => a.sequence_id.cmp(&b.sequence_id),
            _ => a.created_at.cmp(&b.created_at),
        }
        .then(a.sequence_id.cmp(&b.sequence_id));
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    });
    let expand = expand(query);
    let rows = items
        .into_iter()
        .map(|item| world.issue_json(item, &expand))
        .collect();
    paginated(rows, query)
}

fn get_item(world: &World, project: &str, item: &str, query: &[(String, String)]) -> Outcome {
    match world.item(item).filter(|found| found.project == project) {
        Some(found) => Outcome::ok(world.issue_json(found, &expand(query))),
        None => Outcome::does_not_exist(),
    }
}

fn patch_item(
    inner: &Inner,
    world: &mut World,
    user: &str,
    project: &str,
    item: &str,
    body: &Bytes,
) -> Outcome {
    if world
        .item(item)
        .is_none_or(|found| found.project != project)
    {
        return Outcome::does_not_exist();
    }
    let fields = match json_object(body) {
        Ok(fields) => fields,
        Err(outcome) => return outcome,
    };
    let mut hooks = Vec::new();
    // `state_id` is not a field of `IssueSerializer`: Plane ignores it without a word.
    match fields.get("state") {
        Some(serde_json::Value::String(state)) => {
            let Some(target) = world.state(state) else {
                return Outcome {
                    status: 400,
                    body: obj(vec![(
                        "state",
                        Value::Array(vec![text(format!(
                            "Invalid pk \"{state}\" - object does not exist."
                        ))]),
                    )]),
                    hooks,
                };
            };
            if target.project != project {
                return Outcome {
                    status: 400,
                    body: obj(vec![(
                        "non_field_errors",
                        Value::Array(vec![text(
                            "State is not valid please pass a valid state_id",
                        )]),
                    )]),
                    hooks,
                };
            }
            let state = state.clone();
            let old = world.set_item_state(item, &state, user).unwrap_or_default();
            if old != state {
                hooks.extend(state_change_hook(world, item, "state", &old, &state, user));
            }
            inner.records().mutations.push(Mutation {
                actor: user.to_owned(),
                item: item.to_owned(),
                kind: MutationKind::StateSet {
                    from: old,
                    to: state,
                },
            });
        }
        Some(other) => {
            return Outcome {
                status: 400,
                body: obj(vec![(
                    "state",
                    Value::Array(vec![text(format!(
                        "Incorrect type. Expected pk value, received {}.",
                        type_name(other)
                    ))]),
                )]),
                hooks,
            }
        }
        None => {
            if let Some(found) = world.item_mut(item) {
                found.updated_at = time::OffsetDateTime::now_utc();
                found.updated_by = Some(user.to_owned());
            }
        }
    }
    let body = world
        .item(item)
        .map_or(Value::Null, |found| world.issue_json(found, &[]));
    Outcome {
        status: 200,
        body,
        hooks,
    }
}

fn list_comments(world: &World, project: &str, item: &str, query: &[(String, String)]) -> Outcome {
    if world
        .item(item)
        .is_none_or(|found| found.project != project)
    {
        return Outcome::does_not_exist();
    }
    let mut comments: Vec<(usize, &model::CommentRow)> = world
        .comments
        .iter()
        .enumerate()
        .filter(|(_, comment)| comment.issue == item)
        .collect();
    // Newest first; among equal times the later insert first.
    comments
        .sort_by(|(a_idx, a), (b_idx, b)| b.created_at.cmp(&a.created_at).then(b_idx.cmp(a_idx)));
    let rows = comments
        .into_iter()
        .map(|(_, comment)| {
            let mut row = world.comment_json(comment, world.render_offset);
            pyjson::insert_after(&mut row, "id", "is_member", Value::Bool(true));
            row
        })
        .collect();
    paginated(rows, query)
}

fn post_comment(
    inner: &Inner,
    world: &mut World,
    user: &str,
    project: &str,
    item: &str,
    body: &Bytes,
) -> Outcome {
    if world
        .item(item)
        .is_none_or(|found| found.project != project)
    {
        return Outcome::does_not_exist();
    }
    let fields = match json_object(body) {
        Ok(fields) => fields,
        Err(outcome) => return outcome,
    };
    let text_field = |name: &str| {
        fields
            .get(name)
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    };
    let html = text_field("comment_html").unwrap_or_else(|| "<p></p>".to_owned());
    let external_source = text_field("external_source");
    let external_id = text_field("external_id");
    if let (Some(source), Some(id)) = (&external_source, &external_id) {
        let existing = world.comments.iter().find(|comment| {
            comment.project == project
                && comment.external_source.as_deref() == Some(source.as_str())
                && comment.external_id.as_deref() == Some(id.as_str())
        });
        if let Some(existing) = existing {
            return Outcome {
                status: 409,
                body: obj(vec![
                    ("error", text("Work item comment with the same external id and external source already exists")),
                    ("id", text(&existing.id)),
                ]),
                hooks: Vec::new(),
            };
        }
    }
    let (id, hook_body) = create_comment(
        world,
        project,
        item,
        &html,
        user,
        external_source.clone(),
        external_id.clone(),
    );
    inner.records().mutations.push(Mutation {
        actor: user.to_owned(),
        item: item.to_owned(),
        kind: MutationKind::CommentCreated {
            comment: id.clone(),
            html,
            external_source,
            external_id,
        },
    });
    let body = world
        .comments
        .iter()
        .find(|comment| comment.id == id)
        .map_or(Value::Null, |comment| {
            world.comment_json(comment, world.render_offset)
        });
    Outcome {
        status: 201,
        body,
        hooks: vec![Pending::new("issue_comment", "created", &hook_body)],
    }
}

fn json_object(body: &Bytes) -> Result<serde_json::Map<String, serde_json::Value>, Outcome> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(fields)) => Ok(fields),
        Ok(other) => Err(Outcome::error(
            400,
            "non_field_errors",
            format!(
                "Invalid data. Expected a dictionary, but got {}.",
                type_name(&other)
            ),
        )),
        Err(err) => Err(Outcome::error(
            400,
            "detail",
            format!("JSON parse error - {err}"),
        )),
    }
}

fn type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "NoneType",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "int",
        serde_json::Value::String(_) => "str",
        serde_json::Value::Array(_) => "list",
        serde_json::Value::Object(_) => "dict",
    }
}

/// Applies `per_page` and `cursor` (`per_page:page:is_prev`) like Plane's paginator.
fn paginated(rows: Vec<Value>, query: &[(String, String)]) -> Outcome {
    let per_page = match param(query, "per_page") {
        None => DEFAULT_PER_PAGE,
        Some(text) => match text.parse::<usize>() {
            Ok(value) if value > MAX_PER_PAGE => {
                return Outcome::error(400, "detail", "Invalid per_page value. Cannot exceed 1000.")
            }
            Ok(value) if value > 0 => value,
            _ => return Outcome::error(400, "detail", "Invalid per_page parameter."),
        },
    };
    let (cursor_per_page, page) = match param(query, "cursor") {
        None => (per_page, 0),
        Some(cursor) => {
            let parts: Vec<&str> = cursor.split(':').collect();
            let numbers: Option<Vec<i64>> =
                parts.iter().map(|part| part.parse::<i64>().ok()).collect();
            match numbers.as_deref() {
                Some([value, page, _is_prev]) if *page >= 0 && *value > 0 => {
                    (usize::try_from(*value).unwrap_or(per_page), *page)
                }
                _ => return Outcome::error(400, "detail", "Invalid cursor parameter."),
            }
        }
    };
    Outcome::ok(model::paginate(rows, per_page, page, cursor_per_page))
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn expand(query: &[(String, String)]) -> Vec<&str> {
    param(query, "expand")
        .map(|value| value.split(',').map(str::trim).collect())
        .unwrap_or_default()
}

/// `a=b&c=d`, percent-decoded (`+` is a space).
fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

/// A form value: `+` is a space, `%XX` a byte, a malformed escape stays as it is.
fn percent_decode(text: &str) -> String {
    percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}
