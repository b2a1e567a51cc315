//! How much memory rendering can take, measured: the largest template the
//! API server accepts (about 1.5 MiB in one Service), every string of it a
//! parameter placeholder, the parameter as large as the platform allows,
//! rendered 16 times at once through the functions the controller uses
//! (`resolve_offering`, then `provision::build`). A counting allocator
//! tracks the peak of live heap bytes of the whole process; it must stay
//! under half the controller's memory limit in the chart.
//!
//! One test in this binary, so that nothing else allocates meanwhile.

use computenest::api::{ProductKind, ServiceInstance, ServiceSpec};
use computenest::provision::{self, Product};
use computenest::render::{default_allowed_kinds, json_len, resolve_offering};
use computenest::scenario::Scenario;
use computenest::tenancy::{SizeLimits, parse_quantity};
use serde_json::{Map, Value, json};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Barrier;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is passed to the system allocator unchanged; only the
// sizes are counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the system allocator's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Renders at once, as the controller's concurrent reconciles would.
const CONCURRENT: usize = 16;
/// The API server's limit on one request (one Service object), about 1.5 MiB.
const TEMPLATE_BYTES: usize = 1536 * 1024;
/// Most template objects a Service may have (CRD maxItems).
const MAX_OBJECTS: usize = 64;
const PLACEHOLDER: &str = "$(params.p)";

/// `resources.limits.memory` of the chart, in bytes.
fn chart_memory_limit() -> usize {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/computenest-controller/values.yaml"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read the chart's values {path}: {e}"));
    let values: serde_yaml::Value = serde_yaml::from_str(&text)
        .unwrap_or_else(|e| panic!("cannot parse the chart's values {path}: {e}"));
    let Some(memory) = values["resources"]["limits"]["memory"].as_str() else {
        panic!(
            "{path} has no string resources.limits.memory (for example 512Mi): the controller's memory limit is what this test holds rendering to"
        )
    };
    let bytes = parse_quantity(memory).unwrap_or_else(|e| {
        panic!("{path}: resources.limits.memory {memory:?} is not a quantity: {e}")
    });
    assert!(
        bytes >= 1.0,
        "{path}: resources.limits.memory {memory:?} is not a memory limit"
    );
    bytes as usize
}

/// A ConfigMap named `name` with the given data values.
fn config_map(name: &str, values: Vec<String>) -> Value {
    let data: Map<String, Value> = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("k{i:05}"), Value::String(v)))
        .collect();
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// The Service: one String parameter `p`, and `objects` as its template.
fn service(objects: Vec<Value>) -> ServiceSpec {
    let spec = json!({
        "type": "Private",
        "version": "1.0",
        "parameters": [{"name": "p", "type": "String", "maxLength": 65536}],
        "template": {"objects": objects},
    });
    serde_json::from_value(spec).unwrap_or_else(|e| panic!("the test's Service: {e}"))
}

/// Many small strings, each one to three placeholders: the first object
/// already passes `maxObjectBytes`.
fn many_placeholders() -> Vec<Value> {
    let per_object = TEMPLATE_BYTES / MAX_OBJECTS;
    (0..MAX_OBJECTS)
        .map(|o| {
            let mut values = Vec::new();
            let mut size = 0;
            // Room for the apiVersion, kind and name.
            while size + 200 < per_object {
                let v = match values.len() % 3 {
                    0 => PLACEHOLDER.to_string(),
                    1 => format!("{PLACEHOLDER}-{PLACEHOLDER}"),
                    _ => format!("a={PLACEHOLDER}&b={PLACEHOLDER}&c={PLACEHOLDER}"),
                };
                // The key, quotes, colon and comma.
                size += v.len() + 12;
                values.push(v);
            }
            config_map(&format!("many-{o}"), values)
        })
        .collect()
}

/// Objects that each fit `maxObjectBytes` when rendered (14 placeholders
/// in text), so that the instance's total is what stops rendering.
fn objects_that_each_fit(limits: &SizeLimits) -> Vec<Value> {
    let per_object = TEMPLATE_BYTES / MAX_OBJECTS;
    let placeholders = 14;
    let padding = "x".repeat(per_object / 2 - 7 * PLACEHOLDER.len() - 64);
    let objects: Vec<Value> = (0..MAX_OBJECTS)
        .map(|o| {
            let half = format!("{padding}{}", PLACEHOLDER.repeat(placeholders / 2));
            config_map(&format!("fits-{o}"), vec![half.clone(), half])
        })
        .collect();
    let rendered_one = json_len(&objects[0]) + placeholders * (limits.max_parameter_bytes - 11);
    assert!(
        rendered_one + 1024 < limits.max_object_bytes,
        "each object must fit maxObjectBytes when rendered ({rendered_one})"
    );
    objects
}

/// Bytes rendering `objects` in full would produce: each placeholder
/// replaced by `p_bytes` bytes. Computed, not allocated.
fn unbounded_bytes(objects: &[Value], p_bytes: usize) -> usize {
    objects
        .iter()
        .map(|o| {
            let text = o.to_string();
            let n = text.matches(PLACEHOLDER).count();
            text.len() + n * (p_bytes - PLACEHOLDER.len())
        })
        .sum()
}

fn instance(p: &str) -> ServiceInstance {
    serde_json::from_value(json!({
        "apiVersion": "computenest.dev/v1alpha1", "kind": "ServiceInstance",
        "metadata": {"name": "big", "namespace": "acme", "uid": "u-1"},
        "spec": {"serviceRef": {"kind": "Service", "namespace": "isv", "name": "big"},
                 "parameters": {"p": p}}
    }))
    .unwrap_or_else(|e| panic!("the test's ServiceInstance: {e}"))
}

struct Measured {
    peak: usize,
    baseline: usize,
    reasons: Vec<String>,
}

/// Renders the Service `CONCURRENT` times at once and measures the peak.
fn render_concurrently(
    spec: &ServiceSpec,
    inst: &ServiceInstance,
    limits: &SizeLimits,
) -> Measured {
    let offering = resolve_offering(spec, None, &default_allowed_kinds())
        .unwrap_or_else(|e| panic!("the test's Service is valid: {e}"));
    let start = Barrier::new(CONCURRENT);
    let baseline = LIVE.load(Ordering::Relaxed);
    PEAK.store(baseline, Ordering::Relaxed);
    let reasons = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CONCURRENT)
            .map(|_| {
                s.spawn(|| {
                    let product = Product {
                        kind: ProductKind::Service,
                        namespace: "isv",
                        name: "big",
                        isv_namespace: "isv",
                        service_name: "big",
                        isv_product_code: None,
                        product_code: None,
                        price: None,
                        scenario: Scenario::DirectPrivate,
                        offering: &offering,
                    };
                    start.wait();
                    match provision::build(inst, &product, None, limits) {
                        Err(e) => format!("{}: {}", e.reason, e.message),
                        Ok(d) => {
                            // Bounded: what was built fits the limits.
                            let total: usize = d.objects.iter().map(json_len).sum();
                            assert!(total <= limits.max_instance_bytes, "{total}");
                            assert!(
                                d.objects
                                    .iter()
                                    .all(|o| json_len(o) <= limits.max_object_bytes)
                            );
                            "Ok".to_string()
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| panic!("a render panicked")))
            .collect::<Vec<_>>()
    });
    Measured {
        peak: PEAK.load(Ordering::Relaxed),
        baseline,
        reasons,
    }
}

fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[test]
fn sixteen_renders_of_the_largest_template_stay_under_half_the_memory_limit() {
    let limit = chart_memory_limit();
    let limits = SizeLimits::default();
    let p = "x".repeat(limits.max_parameter_bytes);

    // One byte more is refused before anything is rendered.
    let spec = service(many_placeholders());
    let offering = resolve_offering(&spec, None, &default_allowed_kinds())
        .unwrap_or_else(|e| panic!("the test's Service is valid: {e}"));
    let product = Product {
        kind: ProductKind::Service,
        namespace: "isv",
        name: "big",
        isv_namespace: "isv",
        service_name: "big",
        isv_product_code: None,
        product_code: None,
        price: None,
        scenario: Scenario::DirectPrivate,
        offering: &offering,
    };
    let too_long = provision::build(&instance(&format!("{p}x")), &product, None, &limits);
    assert!(
        matches!(&too_long, Err(e) if e.reason == "TooLarge" && e.message.contains("maxParameterBytes")),
        "{:?}",
        too_long.err()
    );
    drop(offering);

    let inst = instance(&p);
    for (shape, objects, setting) in [
        (
            "many placeholders",
            many_placeholders(),
            "tenancy.sizeLimits.maxObjectBytes",
        ),
        (
            "objects that each fit",
            objects_that_each_fit(&limits),
            "tenancy.sizeLimits.maxInstanceBytes",
        ),
    ] {
        let template_bytes: usize = objects.iter().map(json_len).sum();
        assert!(
            template_bytes > TEMPLATE_BYTES * 9 / 10 && template_bytes <= TEMPLATE_BYTES,
            "{shape}: the template is about 1.5 MiB ({template_bytes})"
        );
        // Without the budget, each render would build all of this.
        let unbounded = unbounded_bytes(&objects, p.len());
        let spec = service(objects);
        let m = render_concurrently(&spec, &inst, &limits);
        for r in &m.reasons {
            assert!(
                r.starts_with("TooLarge: ") && r.contains(setting),
                "{shape}: every render is refused by {setting}: {r}"
            );
        }
        println!(
            "{shape}: template {}, {CONCURRENT} concurrent renders: peak heap {} (+{} over the {} before rendering); chart memory limit {}; unbounded, each render would have built {} ({} for all {CONCURRENT})",
            mib(template_bytes),
            mib(m.peak),
            mib(m.peak - m.baseline),
            mib(m.baseline),
            mib(limit),
            mib(unbounded),
            mib(unbounded.saturating_mul(CONCURRENT)),
        );
        // The counter sees the renders: at least one object was live at once.
        assert!(
            m.peak - m.baseline >= limits.max_object_bytes,
            "{shape}: the allocator counted only {} during rendering",
            mib(m.peak - m.baseline)
        );
        assert!(
            m.peak < limit / 2,
            "{shape}: peak heap {} with {CONCURRENT} concurrent renders is not under half the chart's memory limit {}",
            mib(m.peak),
            mib(limit)
        );
        if shape == "many placeholders" {
            // The input this budget stops: one render alone, unbounded,
            // would need more than twice the whole memory limit (about
            // 1.3 GiB each, 21 GiB for 16 at the default limits).
            assert!(
                unbounded > 2 * limit,
                "{shape}: unbounded render {}",
                mib(unbounded)
            );
        }
    }
}
