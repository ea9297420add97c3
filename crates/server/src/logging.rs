//! Log set-up: `PORTCULLIS_LOG` filters, JSON lines for `serve` (text with `--log-format text`),
//! and a cheaper formatter for the fields of the request span.
//!
//! Every request opens a span (method, path, request id; see `portcullis_http::edge`) whose
//! fields the JSON formatter stores as a JSON object and copies into each log line of the
//! request. tracing-subscriber's `JsonFields` builds that object as a map of `serde_json::Value`s
//! and serialises it, for every request, even when the request logs nothing: about 3% of a token
//! request's CPU under load (perf). [`SpanJson`] writes the same object straight into the span's
//! buffer. No crate offers this; the output is plain JSON that the JSON formatter parses back as
//! before, so log lines do not change.

use crate::config::LogFormat;
use std::fmt::{self, Write};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

/// Installs the global subscriber. `format` is `None` for admin commands (text, warnings only).
pub fn init(format: Option<LogFormat>) {
    use tracing_subscriber::EnvFilter;
    let default = if format.is_some() { "info,sqlx=warn" } else { "warn" };
    let filter = std::env::var("PORTCULLIS_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        Some(LogFormat::Json) => {
            builder.json().flatten_event(true).with_current_span(true).fmt_fields(SpanJson).try_init()
        }
        _ => builder.compact().try_init(),
    };
}

/// Span fields as one flat JSON object, written directly (see the module doc).
#[derive(Clone, Copy, Debug, Default)]
pub struct SpanJson;

impl<'w> FormatFields<'w> for SpanJson {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut v = ObjectWriter { out: &mut writer, empty: true, result: Ok(()) };
        fields.record(&mut v);
        v.finish()
    }

    /// Fields recorded after the span was created (`Span::record`) join the same object.
    fn add_fields(
        &self,
        current: &'w mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        if current.fields.len() > 2 && current.fields.ends_with('}') {
            current.fields.pop();
            let mut v = ObjectWriter { out: &mut current.fields, empty: false, result: Ok(()) };
            fields.record(&mut v);
            return v.finish();
        }
        current.fields.clear();
        self.format_fields(current.as_writer(), fields)
    }
}

/// Writes `{"name":value,…}`; strings are JSON-escaped (RFC 8259 §7).
struct ObjectWriter<'a, W: Write> {
    out: &'a mut W,
    empty: bool,
    result: fmt::Result,
}

impl<W: Write> ObjectWriter<'_, W> {
    fn key(&mut self, field: &Field) -> fmt::Result {
        self.out.write_char(if std::mem::take(&mut self.empty) { '{' } else { ',' })?;
        self.out.write_char('"')?;
        let name = field.name();
        Escaped(&mut *self.out).write_str(name.strip_prefix("r#").unwrap_or(name))?;
        self.out.write_str("\":")
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.key(field).and_then(|()| value(self.out));
        }
    }

    fn finish(self) -> fmt::Result {
        self.result?;
        self.out.write_str(if self.empty { "{}" } else { "}" })
    }
}

impl<W: Write> Visit for ObjectWriter<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, |w| {
            w.write_char('"')?;
            Escaped(&mut *w).write_str(value)?;
            w.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |w| {
            w.write_char('"')?;
            write!(Escaped(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, |w| write!(w, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() {
            self.put(field, |w| write!(w, "{value}"));
        } else {
            // JSON has no NaN or infinity: null, as tracing-subscriber's own formatter writes.
            self.put(field, |w| w.write_str("null"));
        }
    }
}

/// Escapes what it is given as the inside of a JSON string.
struct Escaped<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut start = 0;
        for (i, b) in s.bytes().enumerate() {
            let esc = match b {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            self.0.write_str(&s[start..i])?;
            if esc.is_empty() {
                write!(self.0, "\\u{b:04x}")?;
            } else {
                self.0.write_str(esc)?;
            }
            start = i + 1;
        }
        self.0.write_str(&s[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    /// The log lines a closure produces through the `serve` JSON set-up.
    fn lines(f: impl FnOnce()) -> Vec<serde_json::Value> {
        let buf = Buf::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(buf.clone())
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .fmt_fields(SpanJson)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
    }

    #[test]
    fn request_span_fields_reach_every_line_as_json() {
        let hostile = "/a\"b\\c\nd\u{1}é";
        let got = lines(|| {
            let span = tracing::info_span!(
                "request",
                method = %"POST",
                path = %hostile,
                request_id = "r-1",
                n = 7u64,
                neg = -3i64,
                ok = true,
                ratio = 0.5f64,
                late = tracing::field::Empty,
            );
            let _g = span.enter();
            tracing::info!(detail = "x", "first");
            span.record("late", "added");
            tracing::warn!("second");
        });
        assert_eq!(got.len(), 2);
        let span = &got[0]["span"];
        assert_eq!(span["name"], "request");
        assert_eq!(span["method"], "POST");
        assert_eq!(span["path"], hostile, "escaped and read back unchanged");
        assert_eq!(span["request_id"], "r-1");
        assert_eq!((span["n"].as_u64(), span["neg"].as_i64()), (Some(7), Some(-3)));
        assert_eq!((span["ok"].as_bool(), span["ratio"].as_f64()), (Some(true), Some(0.5)));
        assert!(span.get("late").is_none());
        assert_eq!(got[0]["message"], "first");
        assert_eq!(got[0]["detail"], "x");
        assert_eq!(got[1]["span"]["late"], "added", "recorded later, same object");
        assert_eq!(got[1]["span"]["request_id"], "r-1");
    }

    #[test]
    fn a_span_without_fields_is_an_empty_object() {
        let got = lines(|| {
            let span = tracing::info_span!("quiet");
            let _g = span.enter();
            tracing::info!("inside");
        });
        assert_eq!(got[0]["span"], serde_json::json!({"name": "quiet"}));
        let got = lines(|| {
            let span = tracing::info_span!("later", r#type = tracing::field::Empty, ratio = f64::NAN);
            let _g = span.enter();
            span.record("type", "set");
            tracing::info!("inside");
        });
        assert_eq!(got[0]["span"], serde_json::json!({"name": "later", "type": "set", "ratio": null}));
    }
}
