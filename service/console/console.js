// lsr console: one page over the HTTP API (no build step, nothing fetched but the API's own routes).
// The API key is kept in sessionStorage (this tab only), sent as a bearer header, never put in a URL.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "lsr-console-key";
const COLLECTION = "lsr-console-collection";
const state = { collection: null, stats: null };

function headers(json) {
  const h = {};
  const key = sessionStorage.getItem(KEY);
  if (key) h["Authorization"] = "Bearer " + key;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

function words(detail) {
  if (Array.isArray(detail)) {
    return detail.map((e) => (e.loc ? e.loc.join(".") + ": " : "") + e.msg).join("\n");
  }
  return typeof detail === "string" ? detail : JSON.stringify(detail);
}

async function api(method, path, body) {
  const response = await fetch(path, { method, headers: headers(body !== undefined),
                                       body: body !== undefined ? JSON.stringify(body) : undefined });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const error = new Error(`${response.status}: ${words(data && data.detail !== undefined ? data.detail : response.statusText)}`);
    error.status = response.status;
    throw error;
  }
  return data;
}

function showError(error) {
  const box = $("error");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = error.message || String(error);
  box.hidden = false;
}

function base() { return "/collections/" + encodeURIComponent(state.collection); }

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (name === "text") node.textContent = value; else node.setAttribute(name, value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// -- pages ------------------------------------------------------------------------------------------------------
function route() {
  const page = (location.hash || "#search").slice(1);
  showError(null);
  for (const name of ["search", "index", "documents"]) {
    $("page-" + name).hidden = name !== page;
    if (name === page) $("nav-" + name).setAttribute("aria-current", "page");
    else $("nav-" + name).removeAttribute("aria-current");
  }
  if (page === "index") loadStats().catch(showError);
}

async function loadCollections() {
  showError(null);
  const select = $("collection");
  select.innerHTML = "";
  const listed = (await api("GET", "/collections")).collections;
  for (const c of listed) {
    select.append(el("option", { value: c.name, text: c.name + (c.status === "ready" ? "" : " (unavailable)") }));
  }
  const kept = sessionStorage.getItem(COLLECTION);
  const names = listed.map((c) => c.name);
  state.collection = names.includes(kept) ? kept : (names[0] || null);
  if (state.collection) select.value = state.collection;
  $("collection-note").textContent = listed.length ? "" : "no collection on this server";
  await loadStats();
}

async function loadStats() {
  if (!state.collection) return;
  const stats = await api("GET", base());
  state.stats = stats;
  const body = $("stats").querySelector("tbody");
  body.innerHTML = "";
  const rows = [["collection", stats.name], ["status", stats.status], ["documents", stats.documents],
                ["segments", stats.segments], ["generation", stats.generation],
                ["bytes", stats.bytes !== undefined ? stats.bytes.toLocaleString() : ""],
                ["parts", (stats.parts || []).join(", ")], ["encoder", stats.encoder],
                ["modes", (stats.modes || []).join(", ")], ["default mode", stats.default_mode],
                ["default fusion", stats.default_fusion ? JSON.stringify(stats.default_fusion) : "-"],
                ["metadata schema", stats.metadata && Object.keys(stats.metadata).length ?
                  Object.entries(stats.metadata).map(([f, t]) => f + ": " + t).join(", ") : "none"],
                ["quantization max weight", typeof stats.max_weight === "number" ? stats.max_weight.toFixed(4) : "set by the first write"], ["clipped postings", stats.clipped_postings],
                ["writable", stats.writable], ["problem", stats.problem]];
  for (const [name, value] of rows) {
    if (value === undefined || value === null) continue;
    body.append(el("tr", {}, el("th", { scope: "row", text: name }), el("td", { text: String(value) })));
  }
  const fields = stats.metadata ? Object.keys(stats.metadata) : [];
  $("fields-note").textContent = fields.length ? "fields: " + fields.join(", ") : "";
}

// -- search -----------------------------------------------------------------------------------------------------
function searchBody(mode) {
  const body = { query: $("query").value, k: Number($("k").value) || 10, return_documents: true };
  if (mode) body.mode = mode;
  const effective = mode || (state.stats && state.stats.default_mode) || "sparse";
  if (effective === "sparse" || effective === "hybrid") body.explain = true;
  if (effective === "hybrid") {
    const components = [], weights = [];
    for (const c of ["sparse", "dense", "bm25"]) {
      const value = $("w-" + c).value;
      if (value !== "") { components.push(c); weights.push(Number(value)); }
    }
    const method = $("fusion-method").value;
    if (components.length >= 2 || method !== "convex") {
      body.fusion = { method };
      if (components.length >= 2) { body.fusion.components = components; body.fusion.weights = weights; }
    }
  }
  const filter = $("filter").value.trim();
  if (filter) {
    try { body.filter = JSON.parse(filter); } catch (e) { throw new Error("the filter is not valid JSON: " + e.message); }
  }
  return body;
}

// Which explanation tokens a word of the text carries: the token itself, a first WordPiece of 4+ letters that
// starts it, or a continuation piece (##x) that ends it after such a first piece ("stat" + "##in" in "statin").
// The marks carry the tokens, so what is shown is what the API returned.
function tokensOf(word, tokens) {
  const w = word.toLowerCase();
  const starts = tokens.filter((t) => !t.startsWith("##") && (t === w || (t.length >= 4 && w.startsWith(t))));
  const ends = tokens.filter((t) => t.startsWith("##") && w.length > t.length - 2 && w.endsWith(t.slice(2)) &&
                                    starts.some((s) => s !== w && w.length >= s.length + t.length - 2));
  return [...starts, ...ends];
}

function highlighted(text, explanation) {
  const span = el("span", { class: "text" });
  if (!text) return span;
  const weight = new Map((explanation || []).map((c) => [c.token, c.contribution]));
  const tokens = [...weight.keys()];
  const top = Math.max(1e-9, ...weight.values());
  for (const piece of text.match(/[\p{L}\p{N}]+|[^\p{L}\p{N}]+/gu) || []) {
    const found = /[\p{L}\p{N}]/u.test(piece) ? tokensOf(piece, tokens) : [];
    if (!found.length) { span.append(piece); continue; }
    const total = found.reduce((sum, t) => sum + weight.get(t), 0);
    const mark = el("mark", { class: "tok", "data-tokens": found.join(" "),
                              title: found.map((t) => `${t}: ${weight.get(t).toFixed(3)}`).join(", ") }, piece);
    mark.style.setProperty("--w", (0.15 + 0.75 * Math.min(1, total / top)).toFixed(2));
    span.append(mark);
  }
  return span;
}

function hitView(hit) {
  const node = el("div", { class: "hit", "data-id": hit.id });
  node.append(el("span", { class: "score", text: hit.score.toFixed(4) }));
  const title = el("div", {}, highlighted(hit.title || "(no title)", hit.explanation));
  title.firstChild.className = "title";
  title.append(el("span", { class: "id", text: hit.id }));
  node.append(title);
  if (hit.component_scores) {
    node.append(el("div", { class: "components", text: Object.entries(hit.component_scores)
      .map(([c, s]) => `${c} ${s.toFixed(3)}`).join(" · ") }));
  }
  const text = hit.text && hit.text.length > 600 ? hit.text.slice(0, 600) + "…" : hit.text;
  node.append(el("div", {}, highlighted(text, hit.explanation)));
  if (hit.explanation && hit.explanation.length) {
    const table = el("table", {}, el("tr", {}, el("th", { text: "token" }), el("th", { text: "query" }),
                                       el("th", { text: "document" }), el("th", { text: "contribution" })));
    for (const c of hit.explanation) {
      table.append(el("tr", { class: "contribution", "data-token": c.token }, el("td", { text: c.token }),
                      el("td", { text: c.query_weight.toFixed(3) }), el("td", { text: c.document_weight.toFixed(3) }),
                      el("td", { text: c.contribution.toFixed(3) })));
    }
    node.append(el("details", { class: "explain" }, el("summary", { text: "explanation" }), table));
  }
  return node;
}

async function runSearch(event) {
  if (event) event.preventDefault();
  showError(null);
  const results = $("results");
  results.innerHTML = "";
  try {
    const modes = [$("mode").value];
    if ($("compare").value) modes.push($("compare").value);
    const answers = await Promise.all(modes.map((m) => api("POST", base() + "/search", searchBody(m))));
    answers.forEach((answer, n) => {
      const column = el("div", { class: "column", "data-mode": answer.mode });
      column.append(el("h3", { text: `${answer.mode} (${answer.components.join(" + ")}) · ${answer.hits.length} hits · ` +
                                      `${answer.took_ms.toFixed(2)} ms${answer.exact ? "" : " · approximate"}` }));
      for (const hit of answer.hits) column.append(hitView(hit));
      if (!answer.hits.length) column.append(el("p", { class: "note", text: "no hits" }));
      results.append(column);
    });
    const vector = await api("POST", base() + "/encode", { text: $("query").value });
    const box = $("query-vector");
    box.innerHTML = "";
    box.append(el("span", { class: "note", text: `query vector (${vector.nnz} tokens${vector.model_used ? "" : ", no model"}):` }));
    const top = Math.max(1e-9, ...Object.values(vector.vector));
    for (const [token, weight] of Object.entries(vector.vector)) {
      const chip = el("span", { class: "chip", "data-token": token, text: `${token} ${weight.toFixed(2)}` });
      chip.style.setProperty("--w", (0.08 + 0.5 * weight / top).toFixed(2));
      box.append(chip);
    }
  } catch (error) { showError(error); }
}

// -- documents --------------------------------------------------------------------------------------------------
async function showDocument(event) {
  if (event) event.preventDefault();
  showError(null);
  const view = $("doc-view");
  view.innerHTML = "";
  try {
    const doc = await api("GET", base() + "/documents/" + encodeURIComponent($("doc-lookup").value));
    view.append(el("h3", { text: doc.title || "(no title)" }), el("p", { class: "note", text: doc.id }),
                el("p", { text: doc.text || "" }),
                el("pre", { text: JSON.stringify(doc.metadata || {}, null, 2) }));
    $("doc-id").value = doc.id; $("doc-title").value = doc.title || ""; $("doc-text").value = doc.text || "";
    $("doc-metadata").value = doc.metadata && Object.keys(doc.metadata).length ? JSON.stringify(doc.metadata) : "";
  } catch (error) { showError(error); }
}

async function saveDocument(event) {
  event.preventDefault();
  showError(null);
  $("doc-status").textContent = "";
  try {
    const body = { title: $("doc-title").value, text: $("doc-text").value };
    const metadata = $("doc-metadata").value.trim();
    if (metadata) {
      try { body.metadata = JSON.parse(metadata); } catch (e) { throw new Error("the metadata is not valid JSON: " + e.message); }
    }
    const answer = await api("PUT", base() + "/documents/" + encodeURIComponent($("doc-id").value), body);
    $("doc-status").textContent = `saved: generation ${answer.generation} (added ${answer.added}, replaced ${answer.replaced})`;
  } catch (error) { showError(error); }
}

async function deleteDocument() {
  showError(null);
  try {
    const answer = await api("DELETE", base() + "/documents/" + encodeURIComponent($("doc-id").value));
    $("doc-status").textContent = `deleted: generation ${answer.generation}`;
  } catch (error) { showError(error); }
}

// -- wiring -----------------------------------------------------------------------------------------------------
window.addEventListener("hashchange", route);
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const key = $("api-key").value;
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
  $("api-key").value = "";
  $("api-key").placeholder = key ? "key set for this tab" : "kept for this tab only";
  loadCollections().catch(showError);
});
$("collection").addEventListener("change", () => {
  state.collection = $("collection").value;
  sessionStorage.setItem(COLLECTION, state.collection);
  loadStats().catch(showError);
});
$("search-form").addEventListener("submit", runSearch);
$("get-form").addEventListener("submit", showDocument);
$("doc-form").addEventListener("submit", saveDocument);
$("doc-delete").addEventListener("click", deleteDocument);
if (sessionStorage.getItem(KEY)) $("api-key").placeholder = "key set for this tab";
route();
loadCollections().catch(showError);
