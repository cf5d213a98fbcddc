/* packager browser loader (served by `packager serve` at /v1/client.js; plain ES2017, no build step).
 *
 *   <script src="https://cdn.jsdelivr.net/npm/onnxruntime-web/dist/ort.wasm.min.js"></script>  (and/or tf.min.js)
 *   <script src="https://models.example.com/v1/client.js"></script>
 *   const model = await Packager.load("digits", { server: "https://models.example.com" });
 *   const out = await model.predict({ pixels: { data: Float32Array.from(...), shape: [1, 8, 8, 1] } });
 *
 * load() detects what this browser has (WebGPU without a fallback adapter, WebGL, WASM SIMD,
 * navigator.deviceMemory, the runtimes the page loaded: window.tf, window.ort), asks the server
 * which variant fits (POST /v1/models/{m}/resolve), downloads that variant's model files,
 * checks each one's sha256 with WebCrypto, keeps them in Cache Storage ("packager", keyed by the
 * content-addressed artifact URL; re-checked on every hit) and loads them with tf.js or
 * onnxruntime-web. A variant that fails (download, hash, load) gives way to the resolution's
 * next fallback, then to the cloud endpoint (Open Inference Protocol v2), unless
 * cloudFallback is false. The result: { predict, variant, source, runtime, backend, resolution,
 * errors }; source is "network", "cache" or "cloud"; errors lists why earlier choices failed.
 *
 * Tensors in and out of predict() are { data, shape, dtype } by the model's own input and
 * output names (build.json's signature); data is an array or typed array, dtype defaults to
 * "float32". Cross-origin use needs CORS headers on the server (a proxy or CDN in front).
 */
(function (global) {
  "use strict";

  const CACHE_NAME = "packager";
  const DEVICE_KEY = "packager.device_id";
  // (module (func (result v128) i32.const 0 i8x16.splat i8x16.popcnt)): valid only with SIMD.
  const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10,
    1, 8, 0, 65, 0, 253, 15, 253, 98, 11]);
  const ARRAYS = {
    float32: Float32Array, float64: Float64Array, int32: Int32Array, int16: Int16Array, int8: Int8Array,
    uint8: Uint8Array, uint16: Uint16Array, bool: Uint8Array,
  };
  const OIP_TYPES = {
    float32: "FP32", float64: "FP64", float16: "FP16", int64: "INT64", int32: "INT32", int16: "INT16",
    int8: "INT8", uint8: "UINT8", uint16: "UINT16", bool: "BOOL",
  };
  const SCRIPT_URL = global.document && document.currentScript ? document.currentScript.src : null;

  class PackagerError extends Error {
    constructor(code, message) {
      super(message);
      this.name = "PackagerError";
      this.code = code; // "resolve", "download", "integrity", "load", "runtime", "cloud", "none"
    }
  }

  // --- what this browser has ------------------------------------------------------------------

  async function hasWebGPU() {
    try {
      if (!global.navigator || !navigator.gpu) return false;
      const adapter = await navigator.gpu.requestAdapter();
      if (!adapter) return false;
      // A fallback adapter is a software rasterizer: slower than WASM, so not worth a WebGPU variant.
      return !(adapter.isFallbackAdapter || (adapter.info && adapter.info.isFallbackAdapter));
    } catch (err) {
      return false;
    }
  }

  function hasWebGL() {
    try {
      const canvas = document.createElement("canvas");
      return Boolean(canvas.getContext("webgl2") || canvas.getContext("webgl"));
    } catch (err) {
      return false;
    }
  }

  function hasWasmSimd() {
    try {
      return typeof WebAssembly === "object" && WebAssembly.validate(SIMD_PROBE);
    } catch (err) {
      return false;
    }
  }

  function deviceId() {
    const fresh = () => (crypto.randomUUID ? crypto.randomUUID()
      : Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join(""));
    try {
      let id = localStorage.getItem(DEVICE_KEY);
      if (!id) {
        id = fresh();
        localStorage.setItem(DEVICE_KEY, id);
      }
      return id;
    } catch (err) { // storage disabled: a new id per page (no sticky cohort)
      return fresh();
    }
  }

  function versionText(value) {
    const text = String(value || "").trim();
    return /^[0-9A-Za-z][0-9A-Za-z._+-]{0,31}$/.test(text) ? text : null;
  }

  function pageRuntimes() {
    const runtimes = {};
    if (global.tf && tf.version) {
      const v = versionText(tf.version.tfjs || tf.version["tfjs-core"]);
      if (v) runtimes.tfjs = v;
    }
    if (global.ort && ort.InferenceSession) {
      const v = versionText((ort.env && ort.env.versions && (ort.env.versions.web || ort.env.versions.common)) || "");
      if (v) runtimes["onnxruntime-web"] = v;
    }
    return runtimes;
  }

  /** The DeviceProfile this page sends (see DESIGN.md); `extra` adds or overrides fields. */
  async function profile(extra) {
    const accelerators = [];
    if (await hasWebGPU()) accelerators.push("webgpu");
    if (hasWebGL()) accelerators.push("webgl");
    if (hasWasmSimd()) accelerators.push("wasm-simd");
    const out = { platform: "web", device_id: deviceId(), runtimes: pageRuntimes(), accelerators };
    if (global.navigator && typeof navigator.deviceMemory === "number") out.memory_mb = navigator.deviceMemory * 1024;
    const network = global.navigator && navigator.connection && navigator.connection.effectiveType;
    if (typeof network === "string" && /^[ -~]{1,128}$/.test(network)) out.network = network;
    return Object.assign(out, extra || {});
  }

  // --- bytes: fetch, verify, cache --------------------------------------------------------------

  function hex(buffer) {
    return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function sha256(bytes) {
    if (!global.crypto || !crypto.subtle) {
      throw new PackagerError("integrity", "WebCrypto is unavailable (not a secure context): cannot verify downloads");
    }
    return hex(await crypto.subtle.digest("SHA-256", bytes));
  }

  async function openCache() {
    try {
      return global.caches ? await caches.open(CACHE_NAME) : null;
    } catch (err) { // opaque origins, private modes: work without a cache
      return null;
    }
  }

  /** One artifact's verified bytes and where they came from ("cache" or "network"). */
  async function fetchVerified(file, ctx) {
    const url = new URL(file.url, ctx.server + "/").href;
    if (ctx.cache) {
      const hit = await ctx.cache.match(url);
      if (hit) {
        const bytes = await hit.arrayBuffer();
        if ((await sha256(bytes)) === file.sha256) return { bytes, from: "cache" };
        await ctx.cache.delete(url); // corrupted at rest: fetch it again
      }
    }
    let response;
    try {
      response = await ctx.fetch(url);
    } catch (err) {
      throw new PackagerError("download", `cannot download ${file.path}: ${err.message}`);
    }
    if (!response.ok) throw new PackagerError("download", `cannot download ${file.path}: HTTP ${response.status}`);
    const bytes = await response.arrayBuffer();
    const got = await sha256(bytes);
    if (got !== file.sha256 || (file.bytes != null && bytes.byteLength !== file.bytes)) {
      throw new PackagerError("integrity", `sha256 mismatch for ${file.path}: expected ${file.sha256}, got ${got}`
        + ` (${bytes.byteLength} bytes): refused`);
    }
    if (ctx.cache) {
      try {
        await ctx.cache.put(url, new Response(bytes, { headers: { "Content-Type": "application/octet-stream" } }));
      } catch (err) { /* quota: it still runs, uncached */ }
    }
    return { bytes, from: "network" };
  }

  function fileNamed(variant, test, what) {
    const found = (variant.files || []).find((f) => test(f.path));
    if (!found) throw new PackagerError("load", `variant ${variant.id} has no ${what} among its files`);
    return found;
  }

  // --- runtimes -------------------------------------------------------------------------------

  function typed(tensor, dtype) {
    const Kind = ARRAYS[dtype];
    if (dtype === "int64") return BigInt64Array.from(tensor.data, (v) => BigInt(v));
    if (!Kind) throw new PackagerError("runtime", `unsupported input dtype ${dtype}`);
    return tensor.data instanceof Kind ? tensor.data : Kind.from(tensor.data);
  }

  async function loadOrt(variant, ctx, options) {
    const files = variant.files || [];
    const file = files.find((f) => /\.onnx$/.test(f.path)) || fileNamed(variant, (p) => /\.ort$/.test(p), "ONNX model");
    const got = await fetchVerified(file, ctx);
    const providers = options.executionProviders
      || (ctx.profile.accelerators.includes("webgpu") ? ["webgpu", "wasm"] : ["wasm"]);
    let session;
    try {
      session = await ort.InferenceSession.create(new Uint8Array(got.bytes), { executionProviders: providers });
    } catch (err) {
      throw new PackagerError("load", `onnxruntime-web could not load ${variant.id}: ${err.message || err}`);
    }
    const predict = async (inputs) => {
      const feeds = {};
      for (const [name, t] of Object.entries(inputs)) {
        const dtype = t.dtype || "float32";
        feeds[name] = new ort.Tensor(dtype === "bool" ? "bool" : dtype, typed(t, dtype), t.shape);
      }
      const results = await session.run(feeds);
      const out = {};
      for (const [name, t] of Object.entries(results)) out[name] = { data: t.data, shape: Array.from(t.dims), dtype: t.type };
      return out;
    };
    return { predict, from: [got.from], backend: providers.join("|"), session };
  }

  // A streaming model's state pairs (build.json's "state"): when the caller leaves a state input
  // out, the loader carries it: the state the last such call returned, zeros at first or after
  // reset(). A call that passes the state itself is its own and changes nothing carried.
  function withState(predict, pairs) {
    if (!pairs || !pairs.length) return { predict, reset: () => {} };
    let carried = {};
    const stateful = async (inputs) => {
      const feeds = Object.assign({}, inputs);
      const left = pairs.filter((p) => !(p.input in inputs));
      for (const p of left) feeds[p.input] = carried[p.input] || zeroState(p, inputs);
      const out = await predict(feeds);
      for (const p of left) {
        if (out[p.output]) carried[p.input] = { data: out[p.output].data, shape: out[p.output].shape, dtype: p.dtype };
      }
      return out;
    };
    return { predict: stateful, reset: () => { carried = {}; } };
  }

  function zeroState(pair, inputs) {
    const first = Object.values(inputs).find((t) => t && t.shape && t.shape.length);
    const batch = first ? first.shape[0] : 1;
    const shape = pair.shape.map((d) => (d === "batch" ? batch : typeof d === "number" ? d : 1));
    const size = shape.reduce((a, b) => a * b, 1);
    return { data: new (pair.dtype === "float64" ? Float64Array : Float32Array)(size), shape, dtype: pair.dtype };
  }

  function concat(buffers) {
    const total = buffers.reduce((n, b) => n + b.byteLength, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const b of buffers) {
      out.set(new Uint8Array(b), at);
      at += b.byteLength;
    }
    return out.buffer;
  }

  async function loadTfjs(variant, ctx) {
    const jsonFile = fileNamed(variant, (p) => /(^|\/)model\.json$/.test(p), "model.json");
    const base = jsonFile.path.slice(0, jsonFile.path.lastIndexOf("/") + 1);
    const fetched = [await fetchVerified(jsonFile, ctx)];
    const modelJson = JSON.parse(new TextDecoder().decode(fetched[0].bytes));
    const weightSpecs = [];
    const shards = [];
    for (const group of modelJson.weightsManifest || []) {
      weightSpecs.push(...group.weights);
      for (const path of group.paths) {
        const shard = fileNamed(variant, (p) => p === base + path, `weight shard ${path}`);
        const got = await fetchVerified(shard, ctx);
        fetched.push(got);
        shards.push(got.bytes);
      }
    }
    // layout.json maps the model's own names and axis order to the graph model's (NCHW -> NHWC).
    const layoutFile = (variant.files || []).find((f) => /(^|\/)layout\.json$/.test(f.path));
    let layout = null;
    if (layoutFile) {
      const got = await fetchVerified(layoutFile, ctx);
      fetched.push(got);
      layout = JSON.parse(new TextDecoder().decode(got.bytes));
    }
    const artifacts = Object.assign({}, modelJson, { weightSpecs, weightData: concat(shards) });
    delete artifacts.weightsManifest;
    let model;
    try {
      await tf.ready();
      model = await tf.loadGraphModel({ load: async () => artifacts });
    } catch (err) {
      throw new PackagerError("load", `TensorFlow.js could not load ${variant.id}: ${err.message || err}`);
    }
    return { predict: tfjsPredict(model, layout), from: fetched.map((f) => f.from), backend: tf.getBackend(), model };
  }

  function rows(given, i) {
    const out = {};
    for (const [name, t] of Object.entries(given)) {
      const size = t.shape.slice(1).reduce((a, b) => a * b, 1);
      out[name] = Object.assign({}, t, { data: Array.prototype.slice.call(t.data, i * size, (i + 1) * size),
        shape: [1, ...t.shape.slice(1)] });
    }
    return out;
  }

  function stack(results) {
    const out = {};
    for (const name of Object.keys(results[0])) {
      const parts = results.map((r) => r[name]);
      const data = new parts[0].data.constructor(parts.reduce((n, p) => n + p.data.length, 0));
      let at = 0;
      for (const p of parts) {
        data.set(p.data, at);
        at += p.data.length;
      }
      out[name] = { data, shape: [parts.length, ...parts[0].shape.slice(1)], dtype: parts[0].dtype };
    }
    return out;
  }

  function tfjsPredict(model, layout) {
    const one = tfjsPredictOne(model, layout);
    // Graph models converted with a fixed batch of 1 take a batch one row at a time.
    const fixed = (model.inputs || []).some((i) => i.shape && i.shape[0] === 1);
    return async (given) => {
      const batch = Object.values(given)[0].shape[0];
      if (!fixed || batch <= 1) return one(given);
      const results = [];
      for (let i = 0; i < batch; i++) results.push(await one(rows(given, i)));
      return stack(results);
    };
  }

  function tfjsPredictOne(model, layout) {
    const inputs = layout ? layout.inputs : null;
    const outputs = layout ? layout.outputs : null;
    return async (given) => {
      const feeds = {};
      const made = [];
      for (const entry of inputs || Object.keys(given).map((k) => ({ name: k, source: k, perm: null }))) {
        const t = given[entry.source];
        if (!t) throw new PackagerError("runtime", `missing input ${entry.source}`);
        const dtype = t.dtype === "float32" || !t.dtype ? "float32" : "int32";
        let x = tf.tensor(typed(t, dtype === "float32" ? "float32" : "int32"), t.shape, dtype);
        made.push(x);
        if (entry.perm) {
          x = tf.transpose(x, entry.perm);
          made.push(x);
        }
        feeds[entry.name] = x;
      }
      const keys = Object.keys((model.modelSignature || {}).outputs || {});
      const result = await model.executeAsync(feeds, keys.length ? keys : undefined);
      const tensors = result instanceof tf.Tensor ? [result] : result;
      const names = keys.length ? keys : model.outputs.map((o) => o.name);
      const out = {};
      for (const [i, tensor] of tensors.entries()) {
        const entry = (outputs || []).find((e) => e.name === names[i]) || { name: names[i], source: names[i] };
        const y = entry.perm ? tf.transpose(tensor, entry.perm) : tensor;
        out[entry.source] = { data: await y.data(), shape: y.shape, dtype: y.dtype };
        if (y !== tensor) y.dispose();
        tensor.dispose();
      }
      made.forEach((t) => t.dispose());
      return out;
    };
  }

  const LOADERS = { "onnxruntime-web": loadOrt, tfjs: loadTfjs };

  // --- the cloud endpoint (Open Inference Protocol v2) ---------------------------------------

  function inferUrl(url, model) {
    const clean = url.replace(/\/+$/, "");
    if (/\/v2\/models\/[^/]+\/infer$/.test(clean)) return clean;
    if (/\/v2\/models\/[^/]+$/.test(clean)) return clean + "/infer";
    return `${clean}/v2/models/${encodeURIComponent(model)}/infer`;
  }

  function cloudPredict(url, ctx) {
    const reverse = Object.fromEntries(Object.entries(OIP_TYPES).map(([k, v]) => [v, k]));
    return async (inputs) => {
      const body = {
        inputs: Object.entries(inputs).map(([name, t]) => ({
          name, shape: t.shape, datatype: OIP_TYPES[t.dtype || "float32"] || "FP32", data: Array.from(t.data, Number),
        })),
      };
      let response;
      try {
        response = await ctx.fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body) });
      } catch (err) {
        throw new PackagerError("cloud", `the cloud endpoint ${url} is unreachable: ${err.message}`);
      }
      const answer = await response.json().catch(() => ({}));
      if (!response.ok) {
        throw new PackagerError("cloud", `the cloud endpoint answered HTTP ${response.status}: ${answer.error || ""}`);
      }
      const out = {};
      for (const o of answer.outputs || []) {
        const dtype = reverse[o.datatype] || "float32";
        const Kind = ARRAYS[dtype] || Float32Array;
        out[o.name] = { data: Kind.from(o.data.flat(Infinity)), shape: o.shape, dtype };
      }
      return out;
    };
  }

  // --- telemetry: best-effort, never the page's problem ----------------------------------------

  const SAMPLED = 16; // predict events per flush, at most: a uniform sample of the calls

  function telemetry(ctx, model, opts) {
    if (opts.telemetry === false) return { record() {}, predicted() {}, shadowed() {}, counted() {}, flush: async () => 0 };
    const base = { model, device_id: ctx.profile.device_id };
    const queue = [];
    const seconds = Number(opts.telemetrySeconds) > 0 ? Number(opts.telemetrySeconds) : 30;
    let sample = [], calls = 0, slowest = 0, fields = {}, timer = null;
    let shadows = [], runs = 0; // a uniform sample of the shadow runs, as of the calls
    let bins = {}; // "version\u0000variant" -> feature -> summed counts over the reference bins

    function record(event, extra) {
      if (queue.length >= 1000) queue.shift();
      const entry = Object.assign({}, base, { event, at: new Date().toISOString() });
      for (const [key, value] of Object.entries(extra || {})) {
        if (value === undefined || value === null) continue;
        entry[key] = key === "detail" ? String(value).replace(/[^\x20-\x7e]/g, "?").slice(0, 256) : value;
      }
      queue.push(entry);
    }
    function predicted(ms, extra) {
      calls += 1;
      slowest = Math.max(slowest, ms);
      fields = extra;
      if (sample.length < SAMPLED) sample.push(ms);
      else {
        const slot = Math.floor(Math.random() * calls); // reservoir: every call equally likely kept
        if (slot < SAMPLED) sample[slot] = ms;
      }
      later();
    }
    function shadowed(entry) {
      runs += 1;
      if (shadows.length < SAMPLED) shadows.push(entry);
      else {
        const slot = Math.floor(Math.random() * runs);
        if (slot < SAMPLED) shadows[slot] = entry;
      }
      later();
    }
    function counted(found, extra) {
      const key = `${extra.version}\u0000${extra.variant || ""}`;
      const mine = bins[key] || (bins[key] = {});
      for (const [feature, counts] of Object.entries(found)) {
        const have = mine[feature];
        if (!have) mine[feature] = counts.slice();
        else if (have.length === counts.length) counts.forEach((n, i) => { have[i] += n; });
      }
      later();
    }
    function later() {
      if (!timer) timer = setTimeout(() => { timer = null; flush(false); }, seconds * 1000);
    }
    function fold() {
      for (const [key, found] of Object.entries(bins)) {
        const [version, variant] = key.split("\u0000");
        const kept = Object.fromEntries(Object.entries(found).filter(([k, v]) => k.length <= 64 && v.length <= 64).slice(0, 256));
        if (Object.keys(kept).length) record("inputs", { version, variant: variant || null, bins: kept });
      }
      bins = {};
      shadows.forEach((e, i) => record("shadow", Object.assign({}, e, { detail: i ? null : `n=${runs} sampled=${shadows.length}` })));
      shadows = []; runs = 0;
      if (!calls) return;
      const sorted = sample.slice().sort((a, b) => a - b);
      const detail = `n=${calls} sampled=${sample.length} p50=${sorted[sorted.length >> 1].toPrecision(4)}ms ` +
        `max=${slowest.toPrecision(4)}ms`;
      sample.forEach((ms, i) => record("predict", Object.assign({}, fields, { ms, detail: i ? null : detail })));
      sample = []; calls = 0; slowest = 0;
    }
    async function flush(keepalive) {
      fold();
      const events = queue.splice(0, queue.length);
      let sent = 0;
      for (let i = 0; i < events.length; i += 100) {
        const chunk = events.slice(i, i + 100);
        try {
          const response = await ctx.fetch(`${ctx.server}/v1/telemetry`, { method: "POST", keepalive: !!keepalive,
            headers: { "Content-Type": "application/json" }, body: JSON.stringify({ events: chunk }) });
          if (response.ok) sent += chunk.length;
        } catch (err) {
          return sent; // dropped: the next flush sends what comes after
        }
      }
      return sent;
    }
    if (global.addEventListener) global.addEventListener("pagehide", () => { flush(true); });
    return { record, predicted, shadowed, counted, flush };
  }

  // --- drift: a sample of calls counted over the build's reference bins (never the values) -------
  // The same features and bins as packager/fleet/drift.py: a column of a [batch, F] input (F <= 64),
  // a channel of an image (axis 1 when it holds 1 to 4 values, else the last axis when it does),
  // else the whole input; an output's top-1 class, or its values over decile bins.

  function driftFeatures(name, t) {
    const shape = t.shape || [t.data.length], data = Array.from(t.data, Number), rank = shape.length;
    const columns = (count, pick) => Array.from({ length: count }, (_, c) => pick(c));
    if (rank === 2 && shape[1] <= 64) {
      const f = shape[1];
      return columns(f, (c) => [`${name}[${c}]`, data.filter((_, i) => i % f === c)]);
    }
    if (rank >= 3 && shape[1] >= 1 && shape[1] <= 4) {
      const ch = shape[1], inner = shape.slice(2).reduce((a, b) => a * b, 1);
      return columns(ch, (c) => [`${name}[c${c}]`, data.filter((_, i) => Math.floor(i / inner) % ch === c)]);
    }
    if (rank >= 3 && shape[rank - 1] >= 1 && shape[rank - 1] <= 4) {
      const ch = shape[rank - 1];
      return columns(ch, (c) => [`${name}[c${c}]`, data.filter((_, i) => i % ch === c)]);
    }
    return [[name, data]];
  }

  function binCounts(values, edges) {
    const counts = new Array(edges.length + 1).fill(0);
    for (const v of values) {
      let lo = 0, hi = edges.length; // the number of edges <= v (numpy's searchsorted, side right)
      while (lo < hi) { const mid = (lo + hi) >> 1; if (edges[mid] <= v) lo = mid + 1; else hi = mid; }
      counts[lo] += 1;
    }
    return counts;
  }

  function driftCounts(reference, inputs, outputs) {
    const features = reference.features || {}, found = {};
    for (const [name, t] of Object.entries(inputs)) {
      if (!t || !t.data) continue;
      for (const [feature, values] of driftFeatures(name, t)) {
        const entry = features[`in:${feature}`];
        if (entry && entry.edges) found[`in:${feature}`] = binCounts(values, entry.edges);
      }
    }
    for (const [name, t] of Object.entries(outputs)) {
      const entry = features[`out:${name}`];
      if (!entry || !t || !t.data) continue;
      const data = Array.from(t.data, Number);
      if (entry.classes) {
        const k = t.shape[t.shape.length - 1];
        if (t.shape.length < 2 || k !== entry.classes) continue;
        const counts = new Array(k).fill(0);
        for (let row = 0; row < data.length / k; row++) counts[argmax(data, row * k, k)] += 1;
        found[`out:${name}`] = counts;
      } else found[`out:${name}`] = binCounts(data, entry.edges);
    }
    return found;
  }

  async function loadReference(model, version, ctx) {
    try {
      const response = await ctx.fetch(`${ctx.server}/v1/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}`);
      if (!response.ok) return null;
      const doc = await response.json();
      return (doc.model && doc.model.reference) || null;
    } catch (err) {
      return null; // drift counts are best-effort
    }
  }

  // --- shadow runs: the candidate beside stable on a sample of calls, unseen by the page -------
  // One run at a time (a sample that comes while one runs is skipped), the candidate's time held
  // to cpu_budget x stable's; agreement as the Python client judges it (packager/client/shadow.py).

  const ATOL = 1e-3, RTOL = 1e-2;

  function compareOutputs(a, b) {
    const names = Object.keys(a).filter((n) => n in b);
    const pairs = names.length ? names.map((n) => [a[n], b[n]])
      : Object.values(a).slice(0, Object.values(b).length).map((x, i) => [x, Object.values(b)[i]]);
    if (!pairs.length) return { agree: false, diff: null };
    let agree = true, diff = 0;
    for (const [x, y] of pairs) {
      if (x.shape.join(",") !== y.shape.join(",")) return { agree: false, diff: null };
      const n = x.data.length, last = x.shape.length >= 2 ? x.shape[x.shape.length - 1] : 0;
      for (let i = 0; i < n; i++) {
        const u = Number(x.data[i]), gap = Math.abs(u - Number(y.data[i]));
        diff = Number.isNaN(gap) ? Infinity : Math.max(diff, gap);
        if (last < 2 && !(gap <= ATOL + RTOL * Math.abs(u))) agree = false;
      }
      for (let row = 0; last >= 2 && row < n / last; row++) {
        if (argmax(x.data, row * last, last) !== argmax(y.data, row * last, last)) agree = false;
      }
    }
    return { agree, diff: Number.isFinite(diff) && diff <= 1e15 ? diff : null };
  }

  function argmax(data, start, length) {
    let best = start;
    for (let i = start + 1; i < start + length; i++) if (Number(data[i]) > Number(data[best])) best = i;
    return best - start;
  }

  function shadowing(shadow, loaded, tel) {
    const clock = global.performance ? () => global.performance.now() : () => Date.now();
    const fields = { version: shadow.version, variant: shadow.variant.id };
    let busy = false, base = 0, spent = 0;
    return (inputs, outputs, baseMs) => {
      base += baseMs;
      if (Math.random() >= shadow.sample || busy || spent > shadow.cpu_budget * base) return;
      busy = true;
      const start = clock();
      Promise.resolve().then(() => loaded.predict(inputs)).then((theirs) => {
        const ms = clock() - start;
        spent += ms;
        const verdict = compareOutputs(outputs, theirs);
        tel.shadowed(Object.assign({}, fields, { ms, base_ms: baseMs, agree: verdict.agree, diff: verdict.diff }));
      }, (err) => {
        tel.record("error", Object.assign({}, fields, { detail: `shadow: ${err.message || err}` }));
      }).finally(() => { busy = false; });
    };
  }

  async function loadShadow(resolution, ctx, opts, tel) {
    const shadow = resolution.shadow;
    if (!shadow || !shadow.variant || (resolution.variant && (resolution.variant.state || []).length)) return null;
    const loader = LOADERS[shadow.variant.runtime && shadow.variant.runtime.name];
    if (!loader) return null;
    const fields = { version: shadow.version, variant: shadow.variant.id };
    const started = Date.now();
    try {
      const loaded = await loader(shadow.variant, ctx, opts);
      tel.record("load", Object.assign({ ok: true, ms: Date.now() - started, detail: `ok shadow ${loaded.backend}` }, fields));
      return shadowing(shadow, loaded, tel);
    } catch (err) {
      tel.record("load", Object.assign({ ok: false, detail: `shadow failed: ${err.message || err}` }, fields));
      return null;
    }
  }

  /** ``predict``, timed into telemetry; with ``feedback(reward)`` and ``flush()`` beside it. */
  function reporting(loaded, tel, fields, shadow, drift) {
    const clock = global.performance ? () => global.performance.now() : () => Date.now();
    const predict = async (inputs) => {
      const start = clock();
      const outputs = await loaded.predict(inputs);
      const ms = clock() - start;
      tel.predicted(ms, fields);
      if (shadow) shadow(inputs, outputs, ms);
      if (drift && drift.reference && Math.random() < drift.sample) {
        try { tel.counted(driftCounts(drift.reference, inputs, outputs), fields); } catch (err) { /* best-effort */ }
      }
      return outputs;
    };
    const feedback = (reward) => {
      if (typeof reward !== "number" || !isFinite(reward)) throw new PackagerError("usage", "feedback takes a finite number");
      tel.record("feedback", Object.assign({}, fields, { reward }));
    };
    return Object.assign({}, loaded, { predict, feedback, flush: () => tel.flush(false) });
  }

  // --- load -----------------------------------------------------------------------------------

  function defaultServer() {
    if (SCRIPT_URL) return new URL(SCRIPT_URL).origin;
    return global.location ? location.origin : "";
  }

  async function resolve(model, ctx) {
    const url = `${ctx.server}/v1/models/${encodeURIComponent(model)}/resolve?channel=${encodeURIComponent(ctx.channel)}`;
    let response;
    try {
      response = await ctx.fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(ctx.profile) });
    } catch (err) {
      throw new PackagerError("resolve", `cannot reach ${ctx.server}: ${err.message}`);
    }
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = (body.error && body.error.message) || `HTTP ${response.status}`;
      throw new PackagerError("resolve", `resolve ${model} failed: ${message}`);
    }
    return body;
  }

  /**
   * Load `model` for this browser. Options: server (default: where this script came from),
   * channel ("stable"), fetchImpl (default: fetch), cloudFallback (true), profile (extra
   * DeviceProfile fields: max_download_mb, latency_budget_ms, app_version), executionProviders
   * (onnxruntime-web; default webgpu+wasm where WebGPU is real, else wasm), cache (true: use
   * Cache Storage), telemetry (true: resolve and load events, and a uniform sample of at most 16
   * predict calls with their latency, posted to the server's /v1/telemetry every telemetrySeconds
   * (30) and when the page goes away; never raw inputs). When the resolution asks for a shadow
   * run, the candidate it names is loaded too and run on a sample of calls after they return;
   * its agreement goes out with the telemetry. inputsSample (0.05): the share of calls whose
   * inputs and outputs are counted over the build's reference bins for drift (counts only).
   * The model has predict(inputs), feedback(reward) (for experiments) and flush().
   */
  async function load(model, options) {
    const opts = options || {};
    const ctx = {
      server: String(opts.server || defaultServer()).replace(/\/+$/, ""),
      channel: opts.channel || "stable",
      fetch: opts.fetchImpl || global.fetch.bind(global),
      cache: opts.cache === false ? null : await openCache(),
    };
    ctx.profile = await profile(opts.profile);
    const tel = telemetry(ctx, model, opts);
    const resolution = await resolve(model, ctx);
    tel.record("resolve", { version: resolution.version, variant: resolution.variant && resolution.variant.id });
    const errors = [];
    const candidates = [resolution.variant, ...(resolution.fallbacks || [])].filter(Boolean);
    for (const variant of candidates) {
      const loader = LOADERS[variant.runtime && variant.runtime.name];
      if (!loader) {
        errors.push(new PackagerError("none", `${variant.id}: no loader for runtime ${variant.runtime.name}`));
        continue;
      }
      const fields = { version: resolution.version, variant: variant.id };
      const started = Date.now();
      try {
        const loaded = await loader(variant, ctx, opts);
        const source = loaded.from.every((f) => f === "cache") ? "cache" : "network";
        const stream = withState(loaded.predict, variant.state);
        tel.record("load", Object.assign({ ok: true, ms: Date.now() - started, detail: `ok ${loaded.backend}` }, fields));
        const shadow = await loadShadow(resolution, ctx, opts, tel);
        const sample = opts.inputsSample === undefined ? 0.05 : Number(opts.inputsSample);
        const drift = { reference: null, sample };
        if (sample > 0 && opts.telemetry !== false) drift.reference = await loadReference(model, resolution.version, ctx);
        tel.flush(false);
        return reporting({ predict: stream.predict, reset: stream.reset, variant, source, runtime: variant.runtime.name,
          backend: loaded.backend, resolution, profile: ctx.profile, errors, shadowing: !!shadow }, tel, fields, shadow,
          drift);
      } catch (err) {
        tel.record("load", Object.assign({ ok: false, detail: `failed: ${err.message || err}` }, fields));
        errors.push(err instanceof PackagerError ? err : new PackagerError("load", `${variant.id}: ${err.message || err}`));
        if (global.console) console.warn(`packager: ${variant.id} not used: ${err.message || err}`);
      }
    }
    if (!candidates.length) errors.push(new PackagerError("none", resolution.reason || "no variant fits this browser"));
    const cloud = resolution.cloud;
    if (opts.cloudFallback !== false && cloud && cloud.url) {
      const url = inferUrl(new URL(cloud.url, ctx.server + "/").href, model);
      tel.record("load", { version: resolution.version, ok: true, detail: `ok cloud ${url}` });
      tel.flush(false);
      return reporting({ predict: cloudPredict(url, ctx), variant: null, source: "cloud", runtime: cloud.protocol,
        backend: url, resolution, profile: ctx.profile, errors }, tel, { version: resolution.version });
    }
    const why = errors.map((e) => e.message).join("; ");
    const last = errors[errors.length - 1];
    throw new PackagerError(last ? last.code : "none",
      `cannot load ${model} in this browser: ${why}${cloud ? "" : "; no cloud endpoint is configured"}`);
  }

  global.Packager = { load, profile, PackagerError, version: "1" };
})(typeof window !== "undefined" ? window : self);
