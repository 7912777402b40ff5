// The search page: plain DOM code, no framework, no build step. All text from the server is
// inserted with textContent (never innerHTML), so file names cannot inject markup.
"use strict";

const PAGE_SIZE = 20;
const KIND_LABEL = { audio: "Recording", score: "Sheet music", midi: "MIDI", text: "Text", features: "Audio features", image: "Image", other: "File" };
const MODALITY_LABEL = { symbolic: "sheet music / MIDI", audio: "audio", text: "text" };

const $ = (id) => document.getElementById(id);
const state = { mode: null, q: "", uploadId: null, uploadName: "", uploadCaption: "", itemId: null, itemName: "", offset: 0, modality: "" };
const IMAGE_FILE = /\.(png|jpe?g|webp)$/i;
const score = { url: null, page: 1, pages: 1, blobUrl: null };
let maxUpload = 50 * 1024 * 1024;
let searchSerial = 0;

function setStatus(message, isError = false) {
  const el = $("status");
  el.textContent = message;
  el.classList.toggle("error", isError);
}

async function api(url, options = {}) {
  const response = await fetch(url, options);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("application/json") ? await response.json() : null;
  if (!response.ok) {
    throw new Error((body && body.message) || `The server answered ${response.status}.`);
  }
  return body;
}

// ------------------------------------------------------------------------------ searching
function searchUrl() {
  const params = new URLSearchParams({ k: String(PAGE_SIZE), offset: String(state.offset) });
  if (state.modality) params.set("modality", state.modality);
  if (state.mode === "text") {
    params.set("q", state.q);
    return `/api/search?${params}`;
  }
  if (state.mode === "item") return `/api/items/${state.itemId}/similar?${params}`;
  return `/api/uploads/${state.uploadId}/similar?${params}`;
}

async function runSearch(file = null) {
  const serial = ++searchSerial;
  const reading = file && IMAGE_FILE.test(file.name) ? "Looking at" : "Listening to";
  setStatus(file ? `${reading} “${file.name}”…` : "Searching…");
  try {
    let data;
    if (file) {
      const form = new FormData();
      form.append("file", file, file.name);
      const params = new URLSearchParams({ k: String(PAGE_SIZE), offset: "0" });
      if (state.modality) params.set("modality", state.modality);
      data = await api(`/api/search/file?${params}`, { method: "POST", body: form });
      state.uploadId = data.upload_id;
      state.uploadCaption = data.query.caption || ""; // an image is searched by its caption
    } else {
      data = await api(searchUrl());
    }
    if (serial !== searchSerial) return; // a newer search already answered
    showResults(data);
  } catch (error) {
    if (serial === searchSerial) setStatus(error.message, true);
  }
}

function describeQuery() {
  if (state.mode === "text") return `“${state.q}”`;
  if (state.mode === "item") return `music like “${state.itemName}”`;
  if (state.uploadCaption) return `the image “${state.uploadName}”, read as “${state.uploadCaption}”`;
  return `music like the file “${state.uploadName}”`;
}

function showResults(data) {
  const list = $("results");
  list.replaceChildren(...data.results.map(resultRow));
  const title = $("results-title");
  title.hidden = false;
  title.textContent = `Results for ${describeQuery()}`;
  if (data.results.length === 0) {
    setStatus(data.total === 0 ? "Nothing of this kind is in the library." : "No more results.");
  } else {
    const first = data.offset + 1;
    const last = data.offset + data.results.length;
    setStatus(`Showing ${first}–${last} of ${data.total} results.`);
  }
  $("pager").hidden = data.total <= PAGE_SIZE;
  $("page-info").textContent = `Page ${Math.floor(data.offset / PAGE_SIZE) + 1} of ${Math.ceil(data.total / PAGE_SIZE)}`;
  $("prev").disabled = data.offset === 0;
  $("next").disabled = data.offset + data.results.length >= data.total;
  rememberInUrl();
}

function actionLabel(kind) {
  if (kind === "audio") return "▶ Listen";
  if (kind === "score") return "Show score";
  if (kind === "midi") return "Show piano roll";
  if (kind === "text") return "Read";
  if (kind === "image") return "Show image";
  return "Details";
}

function resultRow(result) {
  const li = document.createElement("li");
  li.className = "result";
  li.dataset.id = result.id;
  li.dataset.kind = result.kind;

  const rank = document.createElement("span");
  rank.className = "rank";
  rank.textContent = String(result.rank);

  const main = document.createElement("div");
  main.className = "result-main";
  const path = document.createElement("span");
  path.className = "path";
  path.textContent = result.path;
  const meta = document.createElement("span");
  meta.className = "meta";
  const badge = document.createElement("span");
  badge.className = `badge badge-${result.kind}`;
  badge.textContent = KIND_LABEL[result.kind] || result.kind;
  badge.title = `modality: ${MODALITY_LABEL[result.modality] || result.modality || "unknown"}`;
  const scoreText = document.createElement("span");
  scoreText.className = "score-value";
  scoreText.title = "cosine similarity (−1 to 1)";
  scoreText.textContent = `score ${result.score.toFixed(3)}`;
  const bar = document.createElement("span");
  bar.className = "score-bar";
  bar.style.setProperty("--w", `${Math.max(0, result.score) * 100}%`);
  meta.append(badge, " ", scoreText, bar);
  main.append(path, meta);

  const open = document.createElement("button");
  open.type = "button";
  open.className = "open";
  open.textContent = actionLabel(result.kind);
  open.addEventListener("click", () => openItem(result.id, { play: result.kind === "audio" }));
  const similar = document.createElement("button");
  similar.type = "button";
  similar.className = "similar";
  similar.textContent = "More like this";
  similar.addEventListener("click", () => moreLikeThis(result.id, result.path));

  li.append(rank, main, open, similar);
  return li;
}

function startSearch(mode, extra = {}) {
  Object.assign(state, { mode, offset: 0 }, extra);
  return runSearch(extra.file || null);
}

function moreLikeThis(id, name) {
  startSearch("item", { itemId: id, itemName: name.split("/").pop() });
  window.scrollTo({ top: 0, behavior: "smooth" });
}

// ------------------------------------------------------------------------------ one item
async function openItem(id, { play = false } = {}) {
  let item;
  try {
    item = await api(`/api/items/${id}`);
  } catch (error) {
    setStatus(error.message, true);
    return;
  }
  const detail = $("detail");
  detail.hidden = false;
  detail.dataset.id = id;
  detail.dataset.kind = item.kind;
  $("detail-title").textContent = item.name;
  const size = item.size_bytes == null ? "" : ` · ${(item.size_bytes / 1024).toFixed(1)} KB`;
  $("detail-meta").textContent = `${item.path} · ${KIND_LABEL[item.kind] || item.kind}${size}` +
    (item.available ? "" : ` · ${item.problem}`);
  const download = $("download");
  download.href = item.file_url;
  download.hidden = !item.available;
  $("detail-similar").onclick = () => moreLikeThis(item.id, item.path);

  const player = $("player");
  player.pause();
  player.hidden = item.kind !== "audio" || !item.available;
  if (!player.hidden) {
    player.src = item.file_url;
    if (play) player.play().catch(() => setStatus("Press play to listen."));
  } else {
    player.removeAttribute("src");
  }
  const picture = $("image-view"); // an indexed image (searched by its caption)
  picture.hidden = item.kind !== "image" || !item.available;
  if (picture.hidden) picture.removeAttribute("src");
  else { picture.src = item.file_url; picture.alt = item.name; }
  $("text-view").hidden = item.kind !== "text";
  $("text-view").textContent = item.text || "";
  $("score").hidden = !item.render_url || !item.available;
  if (!$("score").hidden) {
    Object.assign(score, { url: item.render_url, page: 1, pages: 1 });
    showScorePage();
  }
}

async function showScorePage() {
  const image = $("score-image");
  $("score-page").textContent = "Drawing…";
  try {
    const response = await fetch(`${score.url}?page=${score.page}`);
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      throw new Error((body && body.message) || `The server answered ${response.status}.`);
    }
    score.pages = Number(response.headers.get("x-page-count") || "1");
    const blob = await response.blob();
    if (score.blobUrl) URL.revokeObjectURL(score.blobUrl);
    score.blobUrl = URL.createObjectURL(blob);
    image.src = score.blobUrl;
    image.alt = `Page ${score.page} of the rendered ${$("detail").dataset.kind === "midi" ? "piano roll" : "score"}`;
    $("score-page").textContent = `Page ${score.page} of ${score.pages}`;
  } catch (error) {
    image.removeAttribute("src");
    $("score-page").textContent = error.message;
  }
  $("score-prev").hidden = $("score-next").hidden = score.pages <= 1;
  $("score-prev").disabled = score.page <= 1;
  $("score-next").disabled = score.page >= score.pages;
}

// ------------------------------------------------------------------------------ uploads
function uploadFile(file) {
  if (!file) return;
  if (file.size > maxUpload) {
    setStatus(`“${file.name}” is larger than the ${Math.round(maxUpload / 1048576)} MB limit.`, true);
    return;
  }
  startSearch("file", { file, uploadName: file.name, uploadId: null, uploadCaption: "" });
}

function wireDropZone() {
  const zone = $("drop-zone");
  const input = $("file-input");
  zone.addEventListener("click", () => input.click());
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); input.click(); }
  });
  input.addEventListener("change", () => { uploadFile(input.files[0]); input.value = ""; });
  // Dropping anywhere on the page searches; the browser must not navigate to the file.
  document.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) zone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    uploadFile(event.dataTransfer && event.dataTransfer.files[0]);
  });
}

// ------------------------------------------------------------------------------ set-up
function rememberInUrl() {
  const params = new URLSearchParams();
  if (state.mode === "text") params.set("q", state.q);
  if (state.mode === "item") params.set("like", state.itemId);
  if (state.modality) params.set("modality", state.modality);
  if (state.offset) params.set("offset", String(state.offset));
  const query = params.toString();
  history.replaceState(null, "", query ? `?${query}` : location.pathname);
}

async function showLibrary() {
  try {
    const health = await api("/api/health");
    maxUpload = health.max_upload_bytes;
    const parts = Object.entries(health.modalities).map(([m, n]) => `${n.toLocaleString()} ${MODALITY_LABEL[m] || m}`);
    $("library").textContent = `${health.items.toLocaleString()} items in the library (${parts.join(", ")}).`;
    if (!health.text_search) $("library").textContent += " Text search is off: the server runs without a model.";
  } catch (error) {
    $("library").textContent = `The library is not reachable: ${error.message}`;
  }
}

function init() {
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const q = $("q").value.trim();
    if (q) startSearch("text", { q });
  });
  for (const radio of document.querySelectorAll('input[name="modality"]')) {
    radio.addEventListener("change", () => {
      state.modality = radio.value;
      if (state.mode && state.mode !== "file") startSearch(state.mode);
      else if (state.mode === "file" && state.uploadId) { state.offset = 0; runSearch(); }
    });
  }
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE_SIZE); runSearch(); });
  $("next").addEventListener("click", () => { state.offset += PAGE_SIZE; runSearch(); });
  $("score-prev").addEventListener("click", () => { score.page -= 1; showScorePage(); });
  $("score-next").addEventListener("click", () => { score.page += 1; showScorePage(); });
  $("detail-close").addEventListener("click", () => { $("player").pause(); $("detail").hidden = true; });
  wireDropZone();
  showLibrary();

  const params = new URLSearchParams(location.search);
  state.modality = params.get("modality") || "";
  const radio = document.querySelector(`input[name="modality"][value="${CSS.escape(state.modality)}"]`);
  if (radio) radio.checked = true;
  const offset = Math.max(0, Number(params.get("offset")) || 0);
  if (params.get("q")) {
    $("q").value = params.get("q");
    Object.assign(state, { mode: "text", q: params.get("q"), offset });
    runSearch();
  } else if (params.get("like")) {
    Object.assign(state, { mode: "item", itemId: params.get("like"), itemName: "the chosen item", offset });
    runSearch();
  }
  $("q").focus();
}

document.addEventListener("DOMContentLoaded", init);
