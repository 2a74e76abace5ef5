//! The live page: a local HTTP server where you draw a digit and every layer of LeNet-5
//! answers as you draw (feature `cli`; `cargo run --release --bin visualize -- --serve`).
//!
//! The server runs the library's own forward pass ([`LeNet5::activations`]) on each drawing
//! and sends every layer back as grey levels on the same scale as [`crate::viz`]: activation
//! `a` of a layer whose largest value is `m` is `round(255·a/m)`, a probability `p` is
//! `round(255·p)`, a filter weight `w` of a layer whose largest `|w|` is `M` is
//! `round(127.5·(1 + w/M))`.
//!
//! The page (`web/index.html`, `web/app.js`, `web/style.css`) is compiled into the binary;
//! nothing is loaded from anywhere but the server itself. The routes:
//!
//! | route | answer |
//! | --- | --- |
//! | `GET /`, `/app.js`, `/style.css` | the page |
//! | `GET /api/digit?index=I` | bundled test digit `I`: label and 784 pixels `0..=255` |
//! | `GET /api/digit?first=D` | the first bundled test digit whose label is `D` |
//! | `POST /api/forward` | body: a JSON array of 784 pixels in `[0, 1]`, row-major 28×28; answer: every layer ([`forward_json`]) |
//! | `GET /api/filters` | conv1's and conv2's filters as grey levels ([`filters_json`]) |
//! | `GET /api/fc3` | the output layer's weights, for the output-node hover ([`fc3_json`]) |
//!
//! Request parsing and validation are pure functions ([`parse_pixels`], [`route`]) that never
//! panic: bad input is a [`BadRequest`] with a 4xx status and a message. The server is a fixed
//! pool of [`WORKERS`] threads, one connection at a time each, with a body limit
//! ([`MAX_BODY`]), a header limit ([`MAX_HEAD`]), a deadline for reading a request
//! ([`REQUEST_DEADLINE`]) and a write timeout ([`IO_TIMEOUT`]); HTTP/1.1 request heads are parsed by `httparse`.
//!
//! The functions that run or read LeNet-5 (from [`forward_json`] up to [`run`]) are
//! `#[inline]`: compiled by the crate that calls them (the `visualize` command, the tests),
//! not in every build of the library. Compiled here they made the library build LeNet-5's
//! `f32` kernels, which the main job then compiled again: 3 s of its build.

use std::fmt::{self, Write as _};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::layer::Layer;
use crate::lenet::{Image, LeNet5};
use crate::mnist::{Dataset, PIXELS, SIDE};
use crate::tensor::argmax;
use crate::viz::{activation_gray, max_abs, max_value, weight_gray};

/// The port `visualize --serve` listens on unless given `--port` (28, as in 28×28).
pub const DEFAULT_PORT: u16 = 2828;
/// The largest request body accepted (a drawing at full `f64` precision is about 20 KB).
pub const MAX_BODY: usize = 64 * 1024;
/// The largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 32;
/// Threads serving connections; further clients wait in the listen queue.
pub const WORKERS: usize = 4;
/// Write timeout of each socket operation (reads wait at most until [`REQUEST_DEADLINE`]).
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one connection may hold a worker, however slowly its bytes trickle in.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The page and its script and style, compiled in.
const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

/// Why a request was refused: each is a 4xx answer with [`BadRequest::status`] and a message.
#[derive(Clone, Debug, PartialEq)]
pub enum BadRequest {
    /// The body is longer than [`MAX_BODY`] (413).
    BodyTooLarge {
        /// The declared length.
        length: usize,
    },
    /// The request head is longer than [`MAX_HEAD`] or has too many headers (431).
    HeadTooLarge,
    /// A body without a `Content-Length` (411); chunked bodies are not accepted.
    LengthRequired,
    /// The request head is not HTTP/1.x (400).
    MalformedHead(String),
    /// The body is not a JSON array of numbers (400); `index` is the element at fault.
    MalformedJson {
        /// Which element (0-based), if one is at fault.
        index: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// The array does not have 784 elements (422).
    WrongLength {
        /// How many it has.
        got: usize,
    },
    /// A pixel is NaN, infinite or `null` (422).
    NotFinite {
        /// Which pixel (row-major).
        index: usize,
    },
    /// A pixel is outside `[0, 1]` (422).
    OutOfRange {
        /// Which pixel (row-major).
        index: usize,
        /// Its value.
        value: f64,
    },
    /// A query string the route does not understand (400).
    BadQuery(String),
    /// A test digit index past the end of the bundled test set (404).
    NoSuchDigit {
        /// The index asked for.
        index: usize,
        /// How many digits there are.
        count: usize,
    },
    /// No such page (404).
    NotFound(String),
    /// The route exists but not with this method (405).
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The method the route takes.
        allowed: &'static str,
    },
}

impl BadRequest {
    /// The HTTP status of this refusal (always 4xx).
    pub fn status(&self) -> u16 {
        match self {
            Self::BodyTooLarge { .. } => 413,
            Self::HeadTooLarge => 431,
            Self::LengthRequired => 411,
            Self::MalformedHead(_) | Self::MalformedJson { .. } | Self::BadQuery(_) => 400,
            Self::WrongLength { .. } | Self::NotFinite { .. } | Self::OutOfRange { .. } => 422,
            Self::NoSuchDigit { .. } | Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
        }
    }
}

impl fmt::Display for BadRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BodyTooLarge { length } => write!(
                f,
                "request body of {length} bytes is over the limit of {MAX_BODY} bytes"
            ),
            Self::HeadTooLarge => write!(
                f,
                "request head over {MAX_HEAD} bytes or {MAX_HEADERS} headers"
            ),
            Self::LengthRequired => write!(f, "a body needs a Content-Length (no chunked bodies)"),
            Self::MalformedHead(why) => write!(f, "malformed HTTP request: {why}"),
            Self::MalformedJson {
                index: Some(i),
                reason,
            } => write!(
                f,
                "malformed JSON at element {i}: {reason} (expected an array of {PIXELS} numbers in [0, 1])"
            ),
            Self::MalformedJson {
                index: None,
                reason,
            } => write!(
                f,
                "malformed JSON: {reason} (expected an array of {PIXELS} numbers in [0, 1])"
            ),
            Self::WrongLength { got } => {
                write!(f, "expected {PIXELS} pixels (28×28, row-major), got {got}")
            }
            Self::NotFinite { index } => {
                write!(
                    f,
                    "pixel {index} is not a finite number (NaN, infinite or null)"
                )
            }
            Self::OutOfRange { index, value } => {
                write!(f, "pixel {index} is {value}, outside [0, 1]")
            }
            Self::BadQuery(why) => write!(f, "bad query: {why}"),
            Self::NoSuchDigit { index, count } => {
                write!(f, "no test digit {index}: the bundled test set has {count}")
            }
            Self::NotFound(path) => write!(f, "no such page: {path}"),
            Self::MethodNotAllowed { method, allowed } => {
                write!(f, "{method} is not allowed here; use {allowed}")
            }
        }
    }
}

impl std::error::Error for BadRequest {}

/// Parses a drawing: a JSON array of exactly 784 numbers in `[0, 1]` (28×28, row-major, 0
/// background, 1 ink). Strict JSON numbers only; `NaN`, `Infinity` and `null` (what
/// `JSON.stringify` makes of NaN) are [`BadRequest::NotFinite`].
///
/// ```
/// use constnet::live::{BadRequest, parse_pixels};
/// let body = format!("[{}]", vec!["0.5"; 784].join(","));
/// assert_eq!(parse_pixels(body.as_bytes()).unwrap()[783], 0.5);
/// assert_eq!(parse_pixels(b"[0, 1]"), Err(BadRequest::WrongLength { got: 2 }));
/// ```
///
/// # Errors
/// [`BadRequest::MalformedJson`], [`BadRequest::WrongLength`], [`BadRequest::NotFinite`],
/// [`BadRequest::OutOfRange`], in that order of checking.
pub fn parse_pixels(body: &[u8]) -> Result<Box<[f64; PIXELS]>, BadRequest> {
    let malformed = |index, reason: &str| BadRequest::MalformedJson {
        index,
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(body).map_err(|_| malformed(None, "the body is not UTF-8"))?;
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| malformed(None, "the body is not a JSON array"))?;
    let mut pixels = Box::new([0.0f64; PIXELS]);
    if inner.trim().is_empty() {
        return Err(BadRequest::WrongLength { got: 0 });
    }
    let mut count = 0;
    let mut first_bad: Option<BadRequest> = None;
    for (index, token) in inner.split(',').enumerate() {
        count += 1;
        let token = token.trim();
        let value = match token {
            "null" | "NaN" | "-NaN" | "Infinity" | "-Infinity" => {
                first_bad.get_or_insert(BadRequest::NotFinite { index });
                continue;
            }
            _ if !is_json_number(token) => {
                let shown: String = token.chars().take(20).collect();
                return Err(malformed(
                    Some(index),
                    &format!("{shown:?} is not a JSON number"),
                ));
            }
            // A valid JSON number always parses; huge exponents give ±inf.
            _ => token.parse::<f64>().unwrap_or(f64::NAN),
        };
        if !value.is_finite() {
            first_bad.get_or_insert(BadRequest::NotFinite { index });
        } else if !(0.0..=1.0).contains(&value) {
            first_bad.get_or_insert(BadRequest::OutOfRange { index, value });
        } else if let Some(p) = pixels.get_mut(index) {
            *p = value;
        }
    }
    if count != PIXELS {
        return Err(BadRequest::WrongLength { got: count });
    }
    match first_bad {
        Some(bad) => Err(bad),
        None => Ok(pixels),
    }
}

/// Whether `s` is a number by JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub fn is_json_number(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i > start
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !digits(&mut i) {
            return false;
        }
    }
    i == b.len()
}

/// A drawing as LeNet-5's input: the 28×28 pixels at rows and columns `2..30` of a zero
/// 32×32 map, as [`Dataset::write_image`] pads the test digits.
pub fn image_from_pixels(pixels: &[f64; PIXELS]) -> Image<f32> {
    const PAD: usize = (32 - SIDE) / 2;
    let mut image = [[[0.0f32; 32]; 32]; 1];
    for (row, src) in image[0][PAD..PAD + SIDE]
        .iter_mut()
        .zip(pixels.as_chunks::<SIDE>().0)
    {
        for (o, &p) in row[PAD..PAD + SIDE].iter_mut().zip(src) {
            *o = p as f32;
        }
    }
    image
}

/// Writes `v` as a JSON number (`null` if not finite), to `digits` significant digits.
fn push_number(out: &mut String, v: f64, digits: usize) {
    if v.is_finite() {
        let _ = write!(
            out,
            "{}",
            format!("{v:.*e}", digits.saturating_sub(1))
                .parse::<f64>()
                .unwrap_or(0.0)
        );
    } else {
        out.push_str("null");
    }
}

/// One layer's grey levels as a JSON object.
fn push_layer(
    out: &mut String,
    name: &str,
    shape: &[usize],
    max: f64,
    greys: impl Iterator<Item = u8>,
) {
    let _ = write!(out, "{{\"name\":\"{name}\",\"shape\":{shape:?},\"max\":");
    push_number(out, max, 7);
    out.push_str(",\"grey\":[");
    for (i, g) in greys.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{g}");
    }
    out.push_str("]}");
}

/// One layer on the activation scale: `round(255·a/m)`, `m` its largest value.
fn push_activations(out: &mut String, name: &str, shape: &[usize], values: &[f32]) {
    let m = max_value(values);
    push_layer(
        out,
        name,
        shape,
        m,
        values.iter().map(|&a| activation_gray(f64::from(a), m)),
    );
}

/// Runs the forward pass on `image` with `ws` and returns every layer as JSON:
///
/// ```text
/// {"prediction":8, "probabilities":[10], "logits":[10], "micros":F,
///  "layers":[{"name":"input","shape":[1,32,32],"max":m,"grey":[1024 greys]},
///            conv1 [6,28,28], pool1 [6,14,14], conv2 [16,10,10], pool2 [16,5,5],
///            fc1 [120], fc2 [100], output [10]]}
/// ```
///
/// conv1, conv2, fc1 and fc2 are after their ReLU (as [`crate::viz`] draws them); every grey
/// is `round(255·a/m)` with `m` the layer's largest value (`activation_gray`), the output's is
/// `round(255·p)`. `micros` is the server's time for the forward pass and the encoding.
#[inline]
pub fn forward_json(
    net: &LeNet5<f32>,
    image: &Image<f32>,
    ws: &mut <LeNet5<f32> as Layer>::Workspace,
) -> String {
    let start = Instant::now();
    net.probabilities(image, ws);
    let a = LeNet5::<f32>::activations(ws);
    let mut out = String::with_capacity(48 * 1024);
    let _ = write!(
        out,
        "{{\"prediction\":{},\"probabilities\":[",
        // never null in practice: the pixels and the weights are checked to be finite
        argmax(a.probs).map_or("null".to_string(), |c| c.to_string())
    );
    for (i, &p) in a.probs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_number(&mut out, f64::from(p), 6);
    }
    out.push_str("],\"logits\":[");
    for (i, &z) in a.logits.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_number(&mut out, f64::from(z), 6);
    }
    out.push_str("],\"layers\":[");
    push_activations(
        &mut out,
        "input",
        &[1, 32, 32],
        image.as_flattened().as_flattened(),
    );
    out.push(',');
    push_activations(
        &mut out,
        "conv1",
        &[6, 28, 28],
        a.relu1.as_flattened().as_flattened(),
    );
    out.push(',');
    push_activations(
        &mut out,
        "pool1",
        &[6, 14, 14],
        a.pool1.as_flattened().as_flattened(),
    );
    out.push(',');
    push_activations(
        &mut out,
        "conv2",
        &[16, 10, 10],
        a.relu2.as_flattened().as_flattened(),
    );
    out.push(',');
    push_activations(
        &mut out,
        "pool2",
        &[16, 5, 5],
        a.pool2.as_flattened().as_flattened(),
    );
    out.push(',');
    push_activations(&mut out, "fc1", &[120], a.relu3);
    out.push(',');
    push_activations(&mut out, "fc2", &[100], a.relu4);
    out.push(',');
    push_layer(
        &mut out,
        "output",
        &[10],
        1.0,
        a.probs.iter().map(|&p| activation_gray(f64::from(p), 1.0)),
    );
    let _ = write!(out, "],\"micros\":{}}}", start.elapsed().as_micros());
    out
}

/// conv1's and conv2's filters as JSON, each on the signed weight scale
/// `round(127.5·(1 + w/M))` (`weight_gray`), `M` the layer's largest `|w|`:
/// `{"conv1":{"shape":[6,1,5,5],"max_abs":M,"grey":[150]},"conv2":{"shape":[16,6,5,5],…}}`.
#[inline]
pub fn filters_json(net: &LeNet5<f32>) -> String {
    let mut out = String::from("{");
    for (i, (name, param, shape)) in [("conv1", 0, [6, 1, 5, 5]), ("conv2", 2, [16, 6, 5, 5])]
        .into_iter()
        .enumerate()
    {
        let w = net.param(param);
        let m = max_abs(w);
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{name}\":{{\"shape\":{shape:?},\"max_abs\":");
        push_number(&mut out, m, 7);
        out.push_str(",\"grey\":[");
        for (j, &v) in w.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}", weight_gray(f64::from(v), m));
        }
        out.push_str("]}");
    }
    out.push('}');
    out
}

/// The output layer (fc3, 100 → 10) as JSON: `{"weight":[[100 numbers] × 10],"bias":[10]}`,
/// to four significant digits.
#[inline]
pub fn fc3_json(net: &LeNet5<f32>) -> String {
    // Parameter tensor 8 is fc3.weight [10, 100], 9 is fc3.bias [10].
    let mut out = String::from("{\"weight\":[");
    for (k, row) in net.param(8).chunks(100).enumerate() {
        if k > 0 {
            out.push(',');
        }
        out.push('[');
        for (j, &w) in row.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            push_number(&mut out, f64::from(w), 4);
        }
        out.push(']');
    }
    out.push_str("],\"bias\":[");
    for (k, &b) in net.param(9).iter().enumerate() {
        if k > 0 {
            out.push(',');
        }
        push_number(&mut out, f64::from(b), 4);
    }
    out.push_str("]}");
    out
}

/// Test digit `index` as JSON: `{"index":I,"label":L,"count":N,"pixels":[784 × 0..=255]}`.
///
/// # Errors
/// [`BadRequest::NoSuchDigit`] if `index` is past the end.
pub fn digit_json(test: &Dataset, index: usize) -> Result<String, BadRequest> {
    if index >= test.len() {
        return Err(BadRequest::NoSuchDigit {
            index,
            count: test.len(),
        });
    }
    let mut out = format!(
        "{{\"index\":{index},\"label\":{},\"count\":{},\"pixels\":[",
        test.label(index),
        test.len()
    );
    for (i, p) in test.pixels(index).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{p}");
    }
    out.push_str("]}");
    Ok(out)
}

/// What the page asked for, once its method, path and query are understood.
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// `GET /`, `/app.js`, `/style.css`: a file of the page.
    Static {
        /// Its content type.
        content_type: &'static str,
        /// Its text.
        body: &'static str,
    },
    /// `GET /api/digit?index=I`.
    Digit(usize),
    /// `GET /api/digit?first=D`: the first test digit labelled `D`.
    FirstDigit(u8),
    /// `POST /api/forward`.
    Forward,
    /// `GET /api/filters`.
    Filters,
    /// `GET /api/fc3`.
    Fc3,
}

/// Understands a request's method and target (path and query), without touching any body.
///
/// # Errors
/// [`BadRequest::NotFound`], [`BadRequest::MethodNotAllowed`], [`BadRequest::BadQuery`].
pub fn route(method: &str, target: &str) -> Result<Route, BadRequest> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let want = |allowed: &'static str, route: Route| {
        if method == allowed || (allowed == "GET" && method == "HEAD") {
            Ok(route)
        } else {
            Err(BadRequest::MethodNotAllowed {
                method: method.chars().take(16).collect(),
                allowed,
            })
        }
    };
    let file = |content_type, body| Route::Static { content_type, body };
    match path {
        "/" | "/index.html" => want("GET", file("text/html; charset=utf-8", INDEX_HTML)),
        "/app.js" => want("GET", file("text/javascript; charset=utf-8", APP_JS)),
        "/style.css" => want("GET", file("text/css; charset=utf-8", STYLE_CSS)),
        "/api/forward" => want("POST", Route::Forward),
        "/api/filters" => want("GET", Route::Filters),
        "/api/fc3" => want("GET", Route::Fc3),
        "/api/digit" => {
            let route = match query.split_once('=') {
                Some(("index", v)) => Route::Digit(v.parse().map_err(|_| {
                    BadRequest::BadQuery(format!("index={v:.20}: not a digit index"))
                })?),
                Some(("first", v)) => match v.parse::<u8>() {
                    Ok(d) if d < 10 => Route::FirstDigit(d),
                    _ => {
                        return Err(BadRequest::BadQuery(format!(
                            "first={v:.20}: not a class 0-9"
                        )));
                    }
                },
                _ => {
                    return Err(BadRequest::BadQuery(
                        "expected ?index=I or ?first=D (D a class 0-9)".to_string(),
                    ));
                }
            };
            want("GET", route)
        }
        _ => Err(BadRequest::NotFound(path.chars().take(100).collect())),
    }
}

/// An answer: status, content type and body.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    fn json(body: String) -> Self {
        Self {
            status: 200,
            content_type: "application/json",
            body,
        }
    }

    /// A refusal: its status and `{"error": message}`.
    pub fn refusal(bad: &BadRequest) -> Self {
        let mut body = String::from("{\"error\":\"");
        for c in bad.to_string().chars() {
            match c {
                '"' => body.push_str("\\\""),
                '\\' => body.push_str("\\\\"),
                c if u32::from(c) < 0x20 => {
                    let _ = write!(body, "\\u{:04x}", u32::from(c));
                }
                c => body.push(c),
            }
        }
        body.push_str("\"}");
        Self {
            status: bad.status(),
            content_type: "application/json",
            body,
        }
    }
}

/// What the server serves: a network, the bundled test digits, and the answers that never
/// change (filters, output weights), encoded once.
pub struct App {
    net: Box<LeNet5<f32>>,
    test: Dataset,
    filters: String,
    fc3: String,
}

impl App {
    /// An app around a trained network and the test digits the page can pick from.
    pub fn new(net: Box<LeNet5<f32>>, test: Dataset) -> Self {
        let filters = filters_json(&net);
        let fc3 = fc3_json(&net);
        Self {
            net,
            test,
            filters,
            fc3,
        }
    }

    /// Answers one request (method, target and body), with `ws` for the forward pass.
    #[inline]
    pub fn respond(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        ws: &mut <LeNet5<f32> as Layer>::Workspace,
    ) -> Response {
        match self.answer(method, target, body, ws) {
            Ok(response) => response,
            Err(bad) => Response::refusal(&bad),
        }
    }

    #[inline]
    fn answer(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        ws: &mut <LeNet5<f32> as Layer>::Workspace,
    ) -> Result<Response, BadRequest> {
        Ok(match route(method, target)? {
            Route::Static { content_type, body } => Response {
                status: 200,
                content_type,
                body: body.to_string(),
            },
            Route::Digit(index) => Response::json(digit_json(&self.test, index)?),
            Route::FirstDigit(d) => {
                let index = (0..self.test.len())
                    .find(|&i| self.test.label(i) == usize::from(d))
                    .ok_or_else(|| BadRequest::BadQuery(format!("the test set has no {d}")))?;
                Response::json(digit_json(&self.test, index)?)
            }
            Route::Forward => {
                let pixels = parse_pixels(body)?;
                Response::json(forward_json(&self.net, &image_from_pixels(&pixels), ws))
            }
            Route::Filters => Response::json(self.filters.clone()),
            Route::Fc3 => Response::json(self.fc3.clone()),
        })
    }
}

/// Whether `addr` is a loopback address (127.0.0.0/8 or ::1).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Serves `app` on `listener` with [`WORKERS`] threads, forever (until the process ends).
///
/// # Errors
/// Only if no worker thread can be started.
#[inline]
pub fn serve(app: App, listener: TcpListener) -> io::Result<()> {
    let app = Arc::new(app);
    let listener = Arc::new(listener);
    let mut workers = Vec::with_capacity(WORKERS);
    for i in 0..WORKERS {
        let (app, listener) = (Arc::clone(&app), Arc::clone(&listener));
        workers.push(
            std::thread::Builder::new()
                .name(format!("live-{i}"))
                .spawn(move || worker(&app, &listener))?,
        );
    }
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

#[inline]
fn worker(app: &App, listener: &TcpListener) {
    let mut ws = LeNet5::<f32>::workspace();
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                eprintln!("accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // A bug must not take a worker down with it: the connection is dropped instead.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            connection(app, stream, &mut ws)
        }));
        if outcome.is_err() {
            eprintln!("a request handler panicked; the worker goes on");
        }
    }
}

/// One request on `stream`, answered with `Connection: close`.
#[inline]
fn connection(
    app: &App,
    mut stream: TcpStream,
    ws: &mut <LeNet5<f32> as Layer>::Workspace,
) -> io::Result<()> {
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let (response, head_only, drain) = match read_request(&mut stream, deadline) {
        Ok(Some(request)) => {
            let response = app.respond(&request.method, &request.target, &request.body, ws);
            (response, request.method == "HEAD", false)
        }
        Ok(None) => return Ok(()), // closed before a request
        Err(ReadError::Bad(bad)) => (Response::refusal(&bad), false, true),
        Err(ReadError::Io(e)) => return Err(e),
    };
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(response.body.as_bytes())?;
    }
    stream.flush()?;
    if drain {
        // The client may still be sending what was refused: read (a bounded amount) so that
        // closing does not reset the connection before it reads the answer.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut sink = [0u8; 16 * 1024];
        let mut drained = 0usize;
        while drained < 4 * MAX_BODY && Instant::now() < deadline {
            match stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    }
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        _ => "",
    }
}

/// A request read off a socket.
struct Request {
    method: String,
    target: String,
    body: Vec<u8>,
}

enum ReadError {
    Bad(BadRequest),
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        Self::Io(e)
    }
}

/// Reads one request: the head (at most [`MAX_HEAD`] bytes) and a body of its
/// `Content-Length` (at most [`MAX_BODY`]). `Ok(None)` if the peer closed before sending.
fn read_request(stream: &mut TcpStream, deadline: Instant) -> Result<Option<Request>, ReadError> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut filled = 0;
    let (head_len, method, target, length) = loop {
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request deadline").into());
        }
        if filled == buf.len() {
            return Err(ReadError::Bad(BadRequest::HeadTooLarge));
        }
        let n = read_by(stream, &mut buf[filled..], deadline)?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(ReadError::Bad(BadRequest::MalformedHead(
                "the connection closed inside the request head".into(),
            )));
        }
        filled += n;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..filled]) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => {
                let length = body_length(req.headers).map_err(ReadError::Bad)?;
                break (
                    len,
                    req.method.unwrap_or("").to_string(),
                    req.path.unwrap_or("").to_string(),
                    length,
                );
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ReadError::Bad(BadRequest::HeadTooLarge));
            }
            Err(e) => return Err(ReadError::Bad(BadRequest::MalformedHead(e.to_string()))),
        }
    };
    let mut body = buf[head_len..filled].to_vec();
    if body.len() > length {
        body.truncate(length); // a pipelined second request is not read
    }
    let mut chunk = [0u8; 8 * 1024];
    while body.len() < length {
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request deadline").into());
        }
        let want = (length - body.len()).min(chunk.len());
        let n = read_by(stream, &mut chunk[..want], deadline)?;
        if n == 0 {
            return Err(ReadError::Bad(BadRequest::MalformedJson {
                index: None,
                reason: format!("the body ended after {} of its {length} bytes", body.len()),
            }));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(Request {
        method,
        target,
        body,
    }))
}

/// One read that waits at most until `deadline`. A request's bytes may come late without
/// the client being slow: past a full listen queue the kernel drops handshakes, and the
/// client's first packet then arrives after its retransmission back-off (seconds).
fn read_by(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "request deadline"));
    }
    stream.set_read_timeout(Some(left))?;
    stream.read(buf)
}

/// The body length a request declares: its `Content-Length` (0 if none), refused over
/// [`MAX_BODY`]; a `Transfer-Encoding` is refused.
fn body_length(headers: &[httparse::Header<'_>]) -> Result<usize, BadRequest> {
    let mut length = 0;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(BadRequest::LengthRequired);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let text = std::str::from_utf8(h.value).unwrap_or("").trim();
            let n: u64 = text.parse().map_err(|_| {
                BadRequest::MalformedHead(format!(
                    "Content-Length {:?} is not a number",
                    text.chars().take(20).collect::<String>()
                ))
            })?;
            length = usize::try_from(n).unwrap_or(usize::MAX);
            if length > MAX_BODY {
                return Err(BadRequest::BodyTooLarge { length });
            }
        }
    }
    Ok(length)
}

/// Binds `host:port`, prints the address, and serves the live page forever: what
/// `visualize --serve` runs. Port 0 picks a free port (the printed address names it).
///
/// # Errors
/// If the address cannot be bound.
#[inline]
pub fn run(app: App, host: std::net::IpAddr, port: u16) -> io::Result<()> {
    let listener = TcpListener::bind((host, port))
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {host}:{port}: {e}")))?;
    let addr = listener.local_addr()?;
    if !is_loopback(&addr) {
        eprintln!(
            "warning: listening on {addr}, which is not loopback: other machines can reach this page"
        );
    }
    let shown = match addr {
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        SocketAddr::V4(a) => a.to_string(),
    };
    println!("serving the live page on http://{shown}/ (Ctrl-C stops)");
    let _ = io::stdout().flush();
    serve(app, listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(values: &[&str]) -> Vec<u8> {
        format!("[{}]", values.join(",")).into_bytes()
    }

    #[test]
    fn a_drawing_parses_and_every_bad_one_is_a_4xx_with_a_reason() {
        let mut v = vec!["0"; PIXELS];
        v[5] = "1";
        v[6] = "0.25";
        v[7] = "2.5e-1";
        let p = parse_pixels(&body(&v)).unwrap();
        assert_eq!((p[5], p[6], p[7], p[8]), (1.0, 0.25, 0.25, 0.0));

        let cases: Vec<(Vec<u8>, BadRequest)> = vec![
            (body(&v[..783]), BadRequest::WrongLength { got: 783 }),
            (b"[]".to_vec(), BadRequest::WrongLength { got: 0 }),
            (
                body(&[&v[..], &["0"]].concat()),
                BadRequest::WrongLength { got: 785 },
            ),
            (
                body(&[&v[..10], &["NaN"], &v[11..]].concat()),
                BadRequest::NotFinite { index: 10 },
            ),
            (
                body(&[&v[..10], &["null"], &v[11..]].concat()),
                BadRequest::NotFinite { index: 10 },
            ),
            (
                body(&[&v[..3], &["1e999"], &v[4..]].concat()),
                BadRequest::NotFinite { index: 3 },
            ),
            (
                body(&[&v[..3], &["1.5"], &v[4..]].concat()),
                BadRequest::OutOfRange {
                    index: 3,
                    value: 1.5,
                },
            ),
            (
                body(&[&v[..3], &["-0.01"], &v[4..]].concat()),
                BadRequest::OutOfRange {
                    index: 3,
                    value: -0.01,
                },
            ),
        ];
        for (b, expected) in cases {
            let got = parse_pixels(&b).unwrap_err();
            assert_eq!(got, expected);
            assert!((400..500).contains(&got.status()));
        }
        for bad in [
            &b"{\"pixels\": []}"[..],
            b"[0, 1",
            b"[0,,1]",
            b"[.5]",
            b"[01]",
            b"[0x1]",
            b"[\"0\"]",
            b"[[0]]",
            b"\xff\xfe",
            b"",
        ] {
            let got = parse_pixels(bad).unwrap_err();
            assert!(
                matches!(got, BadRequest::MalformedJson { .. }),
                "{:?}: {got:?}",
                String::from_utf8_lossy(bad)
            );
            assert_eq!(got.status(), 400);
            assert!(got.to_string().contains("malformed JSON"), "{got}");
        }
    }

    #[test]
    fn json_numbers_follow_the_grammar() {
        for ok in ["0", "-0", "1", "0.5", "1e-3", "2.5E+2", "123"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "01", ".5", "1.", "1e", "+1", "0x1", "1 2", "NaN", "1e+",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn routes_refuse_unknown_paths_wrong_methods_and_bad_queries() {
        assert_eq!(route("POST", "/api/forward"), Ok(Route::Forward));
        assert_eq!(route("GET", "/api/digit?index=12"), Ok(Route::Digit(12)));
        assert_eq!(route("GET", "/api/digit?first=8"), Ok(Route::FirstDigit(8)));
        assert!(matches!(route("GET", "/"), Ok(Route::Static { .. })));
        for (method, target, status) in [
            ("GET", "/nope", 404),
            ("GET", "/../etc/passwd", 404),
            ("GET", "/api/forward", 405),
            ("POST", "/", 405),
            ("GET", "/api/digit", 400),
            ("GET", "/api/digit?index=-1", 400),
            ("GET", "/api/digit?first=10", 400),
        ] {
            let got = route(method, target).unwrap_err();
            assert_eq!(got.status(), status, "{method} {target}: {got}");
        }
    }

    #[test]
    fn a_drawing_is_padded_like_the_test_digits() {
        let mut pixels = Box::new([0.0; PIXELS]);
        pixels[0] = 1.0;
        pixels[PIXELS - 1] = 0.5;
        let image = image_from_pixels(&pixels);
        assert_eq!(image[0][2][2], 1.0);
        assert_eq!(image[0][29][29], 0.5);
        assert_eq!(image[0].iter().flatten().sum::<f32>(), 1.5);
    }
}
