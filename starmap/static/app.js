// Star Map: a live sky. No build step, no dependencies, nothing from elsewhere.
"use strict";

const state = {
  config: { half_life: 3600, boost: 20, floor: 20 },
  skew: 0, // seconds the server's clock is ahead of this one (from /config.json)
  stars: new Map(), // id → {id, x, y, message, likes, base (brightness at t0), t0 (server epoch s)}
  hover: null,
  focused: null,
  view: { scale: 1, cx: 0, cy: 0 }, // zoom, and the sky point at the centre of the canvas
  area: null, // a big sky: the box loaded and streamed (the view and a margin); null: all of it
  truncated: false, // the area held more stars than the page loads at once
  lastEventId: null,
  frameMs: 0,
};
// Past this many stars the page loads and streams only its viewport (and a margin).
const BIG_SKY = 3000;
const PAGE = 1000;
const AREA_PAGES = 5; // at most this many pages of one area (zoom in for the rest)
const MARGIN = 0.5; // the area reaches this fraction of the view beyond each edge
const MAX_SCALE = 64;
window.starmap = state; // for people (and tests) poking at it in the console

const sky = document.getElementById("sky");
const ctx = sky.getContext("2d");
const statusEl = document.getElementById("status");
const tooltip = document.getElementById("tooltip");
const toast = document.getElementById("toast");
const list = document.getElementById("stars");
const form = document.getElementById("place-form");

// -- the brightness model, as on the server ---------------------------------------------
// A star carries its brightness as of its last like (base_brightness at last_liked): any
// answer, fresh or revalidated from the cache (304), fades from there by the server's clock.
function brightnessNow(star, now = Date.now()) {
  const elapsed = Math.max(0, now / 1000 + state.skew - star.t0);
  return Math.max(state.config.floor, star.base * Math.pow(2, -elapsed / state.config.half_life));
}

// -- coordinates: the sky is [-1, 1]², y up ---------------------------------------------
// The view: the canvas shows [cx ± 1/scale] × [cy ± 1/scale] of the sky.
const clamp = (v, lo = -1, hi = 1) => Math.max(lo, Math.min(hi, v));
function toScreen(x, y) {
  const { scale, cx, cy } = state.view;
  return [(((x - cx) * scale + 1) / 2) * sky.clientWidth, ((1 - (y - cy) * scale) / 2) * sky.clientHeight];
}
function toSkyRaw(px, py) {
  const { scale, cx, cy } = state.view;
  return [((px / sky.clientWidth) * 2 - 1) / scale + cx, (1 - (py / sky.clientHeight) * 2) / scale + cy];
}
function toSky(px, py) { const [x, y] = toSkyRaw(px, py); return [clamp(x), clamp(y)]; }
function viewBox(margin = 0) {
  const { scale, cx, cy } = state.view, half = (1 + margin) / scale;
  return { x1: clamp(cx - half), y1: clamp(cy - half), x2: clamp(cx + half), y2: clamp(cy + half) };
}
const boxParam = (b) => [b.x1, b.y1, b.x2, b.y2].map((v) => v.toFixed(4)).join(",");
const within = (outer, inner) => outer.x1 <= inner.x1 && outer.y1 <= inner.y1 && outer.x2 >= inner.x2 && outer.y2 >= inner.y2;
const inBox = (b, x, y) => !b || (b.x1 <= x && x <= b.x2 && b.y1 <= y && y <= b.y2);
function setView(scale, cx, cy) {
  scale = clamp(scale, 1, MAX_SCALE);
  const room = 1 - 1 / scale; // the centre stays where the view fits inside the sky
  state.view = { scale, cx: clamp(cx, -room, room), cy: clamp(cy, -room, room) };
  sky.dataset.scale = scale.toFixed(3);
  redraw();
  viewMoved();
}
function zoomAt(px, py, factor) {
  const [x, y] = toSkyRaw(px, py), scale = clamp(state.view.scale * factor, 1, MAX_SCALE);
  // Keep the sky point under the pointer where it is.
  setView(scale, x - ((px / sky.clientWidth) * 2 - 1) / scale, y - (1 - (py / sky.clientHeight) * 2) / scale);
}
function panBy(dx, dy) {
  const { scale, cx, cy } = state.view;
  setView(scale, cx - (dx / sky.clientWidth) * 2 / scale, cy + (dy / sky.clientHeight) * 2 / scale);
}
function radius(star) { return 2 + (brightnessNow(star) / 100) * 7; }

function starAt(px, py) {
  let best = null, bestDistance = Infinity;
  for (const star of state.stars.values()) {
    const [sx, sy] = toScreen(star.x, star.y);
    const d = Math.hypot(sx - px, sy - py);
    if (d < Math.max(14, radius(star) + 6) && d < bestDistance) { best = star; bestDistance = d; }
  }
  return best;
}

// -- drawing ----------------------------------------------------------------------------
function resize() {
  const ratio = window.devicePixelRatio || 1;
  sky.width = Math.round(sky.clientWidth * ratio);
  sky.height = Math.round(sky.clientHeight * ratio);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
}

function draw() {
  const w = sky.clientWidth, h = sky.clientHeight, now = Date.now();
  const gradient = ctx.createRadialGradient(w / 2, h, 0, w / 2, h / 2, Math.max(w, h));
  gradient.addColorStop(0, "#111a3d");
  gradient.addColorStop(1, "#05060f");
  ctx.fillStyle = gradient;
  ctx.fillRect(0, 0, w, h);
  const started = performance.now();
  const visible = [];
  for (const star of state.stars.values()) {
    const [sx, sy] = toScreen(star.x, star.y);
    if (sx >= -20 && sy >= -20 && sx <= w + 20 && sy <= h + 20) visible.push([star, sx, sy]);
  }
  const glow = visible.length <= 1500; // a glow per star is the costly part: only for a sparse view
  let drawn = 0;
  for (const [star, sx, sy] of visible) {
    const b = brightnessNow(star, now) / 100;
    const r = radius(star);
    const selected = star === state.hover || star === state.focused;
    ctx.save();
    if (glow) {
      ctx.shadowColor = `rgba(255, 230, 160, ${0.4 + b * 0.6})`;
      ctx.shadowBlur = 6 + b * 22;
    }
    ctx.fillStyle = `rgba(255, ${220 + Math.round(b * 35)}, ${180 + Math.round(b * 75)}, ${0.45 + b * 0.55})`;
    ctx.beginPath();
    ctx.arc(sx, sy, r, 0, Math.PI * 2);
    ctx.fill();
    if (selected) {
      ctx.shadowBlur = 0;
      ctx.strokeStyle = "#ffd66b";
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      ctx.arc(sx, sy, r + 5, 0, Math.PI * 2);
      ctx.stroke();
    }
    ctx.restore();
    drawn += 1;
  }
  sky.dataset.drawn = String(drawn);
  const took = performance.now() - started;
  state.frameMs = state.frameMs ? state.frameMs * 0.8 + took * 0.2 : took;
  sky.dataset.frameMs = state.frameMs.toFixed(2);
  if (!document.body.dataset.firstPaintMs && drawn) document.body.dataset.firstPaintMs = performance.now().toFixed(0);
}

let frameQueued = false;
function redraw() {
  if (!frameQueued) { frameQueued = true; requestAnimationFrame(() => { frameQueued = false; draw(); }); }
}
setInterval(redraw, 1000); // brightness fades even when nothing happens

// -- the star list: keyboard and screen-reader access ---------------------------------
function label(star) {
  return `${star.message} — ${star.likes} ${star.likes === 1 ? "like" : "likes"}`;
}
const buttons = new Map(); // id → its button in the keyboard list
function renderItem(star) {
  let button = buttons.get(star.id);
  if (!button) {
    const item = document.createElement("li");
    button = document.createElement("button");
    button.type = "button";
    button.className = "star-button";
    button.dataset.id = star.id;
    button.addEventListener("click", () => like(star.id));
    button.addEventListener("focus", () => { state.focused = state.stars.get(star.id) || null; showTooltip(state.focused); redraw(); });
    button.addEventListener("blur", () => { state.focused = null; hideTooltip(); redraw(); });
    item.append(button);
    list.append(item);
    buttons.set(star.id, button);
  }
  button.textContent = label(star);
  button.setAttribute("aria-label", `Star: ${label(star)}. Press Enter to like.`);
  button.dataset.likes = String(star.likes);
  if (state.hover === star || state.focused === star) showTooltip(star);
}
function removeItem(id) {
  const button = buttons.get(id);
  if (button) { button.parentElement.remove(); buttons.delete(id); }
}

// -- state changes ----------------------------------------------------------------------
function upsert(data) {
  const star = { id: data.id, x: data.x, y: data.y, message: data.message, likes: data.likes,
                 base: data.base_brightness, t0: data.last_liked };
  const old = state.stars.get(star.id);
  if (old && state.hover === old) state.hover = star;
  if (old && state.focused === old) state.focused = star;
  state.stars.set(star.id, star);
  renderItem(star);
  redraw();
}
function remove(id) {
  const star = state.stars.get(id);
  if (star && state.hover === star) { state.hover = null; hideTooltip(); }
  state.stars.delete(id);
  removeItem(id);
  redraw();
}
// The URL of an answer's next page (its Link: <…>; rel="next"), or null on the last one.
function nextPage(answer) {
  const link = answer.headers.get("Link");
  return link && link.includes('rel="next"') ? link.slice(link.indexOf("<") + 1, link.indexOf(">")) : null;
}
// Pages of a list, following Link: rel="next" (at most `max` pages); [stars, more remain].
async function pages(url, max) {
  const stars = [];
  for (let page = 0; url && page < max; page += 1) {
    const answer = await fetch(url); // revalidated with If-None-Match by the browser's cache
    if (!answer.ok) throw new Error(`${answer.status} from ${url}`);
    stars.push(...(await answer.json()));
    url = nextPage(answer);
  }
  return [stars, url !== null];
}
function replaceAll(stars) {
  const fresh = new Set(stars.map((s) => s.id));
  for (const id of [...state.stars.keys()]) if (!fresh.has(id)) remove(id);
  for (const star of stars) {
    const known = state.stars.get(star.id);
    // An update event may have overtaken the list: likes only grow, keep the newer.
    if (!known || known.likes <= star.likes) upsert(star);
  }
}
// The whole sky when it is small; past BIG_SKY stars, only the viewport and a margin.
async function loadSky() {
  if (!state.events || state.area) { state.area = null; connect(); } // the stream first: no gap
  const [stars, more] = await pages(`/stars?limit=${PAGE}`, BIG_SKY / PAGE);
  if (more) { await loadArea(); return; }
  sky.dataset.mode = "sky";
  replaceAll(stars);
}
async function loadArea() {
  const area = viewBox(MARGIN);
  state.area = area;
  sky.dataset.mode = "viewport";
  sky.dataset.area = boxParam(area);
  connect(); // the stream of the new area first: nothing between the two is missed
  const [stars, more] = await pages(`/stars?bbox=${boxParam(area)}&limit=${PAGE}`, AREA_PAGES);
  if (state.area !== area) return; // the view moved on meanwhile
  state.truncated = more;
  replaceAll(stars);
  if (more) say("This part of the sky is crowded: zoom in to see every star.");
}
let viewTimer = 0;
function viewMoved() {
  // A big sky follows the view: a new area once the view leaves the one loaded.
  clearTimeout(viewTimer);
  viewTimer = setTimeout(() => {
    if (state.area && (!within(state.area, viewBox(0)) || (state.truncated && state.view.scale > 1))) loadArea();
  }, 200);
}

// -- tooltip and toast ------------------------------------------------------------------
function showTooltip(star, px, py) {
  if (!star) return hideTooltip();
  const [sx, sy] = px === undefined ? toScreen(star.x, star.y) : [px, py];
  tooltip.replaceChildren(document.createTextNode(star.message));
  const likes = document.createElement("span");
  likes.className = "likes";
  likes.id = "tooltip-likes";
  likes.textContent = `♥ ${star.likes}`;
  tooltip.append(likes);
  tooltip.hidden = false;
  tooltip.style.left = `${Math.min(sx + 14, window.innerWidth - tooltip.offsetWidth - 8)}px`;
  tooltip.style.top = `${Math.max(sy - 10, 48)}px`;
}
function hideTooltip() { tooltip.hidden = true; }
let toastTimer = 0;
function say(text) {
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toast.hidden = true; }, 4000);
}

// -- writes: JSON, keyed, retried -------------------------------------------------------------
function newKey() {
  // A random UUID (crypto.randomUUID needs a secure context; getRandomValues does not).
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
// One write, with one Idempotency-Key for all its tries: after a network error (the
// answer lost, maybe after the server committed), a 503 or a key still in flight (409
// with Retry-After) it is sent again, and the server counts it once. JSON, always: the
// API refuses writes of any other type (no cross-site form can write).
async function post(url, body, tries = 3) {
  const init = { method: "POST", body: JSON.stringify(body),
                 headers: { "Content-Type": "application/json", "Idempotency-Key": newKey() } };
  for (let attempt = 1; ; attempt += 1) {
    let answer = null;
    try { answer = await fetch(url, init); } catch (error) { if (attempt >= tries) throw error; }
    const again = answer === null || answer.status === 503 || (answer.status === 409 && answer.headers.get("Retry-After"));
    if (!again || attempt >= tries) return answer;
    const wait = Number(answer && answer.headers.get("Retry-After")) || 0.5 * 2 ** (attempt - 1);
    await new Promise((resolve) => setTimeout(resolve, Math.min(wait, 5) * 1000));
  }
}

// -- likes ----------------------------------------------------------------------------------
async function like(id) {
  let answer;
  try { answer = await post(`/stars/${encodeURIComponent(id)}/like`, {}); } catch {
    say("No connection: that like did not reach the sky."); return;
  }
  if (answer.status === 429) {
    const wait = answer.headers.get("Retry-After") || "a few";
    say(`That's a lot of love! You can like again in ${wait} s.`);
    return;
  }
  if (!answer.ok) { say("That star could not be liked just now."); return; }
  const result = await answer.json();
  const star = state.stars.get(id);
  if (star && result.likes >= star.likes) {
    upsert({ ...star, likes: result.likes, base_brightness: result.base_brightness, last_liked: result.last_liked });
  }
}

// -- placing a star ---------------------------------------------------------------------
function openForm(x, y) {
  form.x.value = x.toFixed(2);
  form.y.value = y.toFixed(2);
  form.message.value = "";
  document.getElementById("message-error").textContent = "";
  document.getElementById("form-error").textContent = "";
  form.hidden = false;
  form.message.focus();
}
function closeForm() { form.hidden = true; }
form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const body = { x: Number(form.x.value), y: Number(form.y.value), message: form.message.value };
  let answer;
  try { answer = await post("/stars", body); } catch {
    document.getElementById("form-error").textContent = "No connection: the star was not placed. Try again.";
    return;
  }
  const result = await answer.json().catch(() => ({}));
  if (answer.status === 201) { upsert(result); closeForm(); say("Your star is in the sky."); return; }
  const errors = Object.fromEntries((result.errors || []).map((e) => [e.field, e.message]));
  document.getElementById("message-error").textContent = errors.message ? `Message ${errors.message}.` : "";
  const other = Object.entries(errors).filter(([field]) => field !== "message").map(([f, m]) => `${f} ${m}`);
  document.getElementById("form-error").textContent =
    other.join("; ") || (errors.message ? "" : result.detail || "The star could not be placed.");
});
document.getElementById("cancel").addEventListener("click", closeForm);
document.getElementById("place-button").addEventListener("click", () => openForm(Math.random() * 1.6 - 0.8, Math.random() * 1.6 - 0.8));
document.addEventListener("keydown", (event) => { if (event.key === "Escape" && !form.hidden) closeForm(); });

// -- pointer: hover shows, click likes or places --------------------------------------
sky.addEventListener("pointermove", (event) => {
  const star = starAt(event.clientX, event.clientY);
  if (star !== state.hover) { state.hover = star; redraw(); }
  if (star) showTooltip(star, event.clientX, event.clientY); else if (!state.focused) hideTooltip();
});
sky.addEventListener("click", (event) => {
  if (!form.hidden) return closeForm();
  const star = starAt(event.clientX, event.clientY);
  if (dragged) { dragged = false; return; } // the end of a pan, not a click
  if (star) { showTooltip(star, event.clientX, event.clientY); like(star.id); return; }
  const [x, y] = toSky(event.clientX, event.clientY);
  openForm(x, y);
});

// -- zoom and pan: wheel, drag, pinch, keys ----------------------------------------------
const pointers = new Map(); // pointerId → [x, y] while pressed
let dragged = false, travel = 0;
sky.addEventListener("wheel", (event) => {
  event.preventDefault();
  zoomAt(event.clientX, event.clientY, Math.exp(-event.deltaY * 0.0015));
}, { passive: false });
sky.addEventListener("pointerdown", (event) => {
  pointers.set(event.pointerId, [event.clientX, event.clientY]);
  travel = 0;
  sky.setPointerCapture(event.pointerId);
});
sky.addEventListener("pointermove", (event) => {
  const last = pointers.get(event.pointerId);
  if (!last) return;
  if (pointers.size === 2) { // pinch: the distance between two fingers scales the view
    const [other] = [...pointers].filter(([id]) => id !== event.pointerId).map(([, p]) => p);
    const before = Math.hypot(last[0] - other[0], last[1] - other[1]);
    const after = Math.hypot(event.clientX - other[0], event.clientY - other[1]);
    if (before > 0) zoomAt((event.clientX + other[0]) / 2, (event.clientY + other[1]) / 2, after / before);
  } else {
    panBy(event.clientX - last[0], event.clientY - last[1]);
  }
  travel += Math.hypot(event.clientX - last[0], event.clientY - last[1]);
  if (travel > 4) dragged = true;
  pointers.set(event.pointerId, [event.clientX, event.clientY]);
});
for (const type of ["pointerup", "pointercancel"]) sky.addEventListener(type, (event) => pointers.delete(event.pointerId));
document.addEventListener("keydown", (event) => {
  if (event.target !== document.body || event.ctrlKey || event.metaKey || event.altKey) return;
  const w = sky.clientWidth, h = sky.clientHeight, step = 0.1;
  const keys = {
    "+": () => zoomAt(w / 2, h / 2, 1.25), "=": () => zoomAt(w / 2, h / 2, 1.25), "-": () => zoomAt(w / 2, h / 2, 0.8),
    ArrowLeft: () => panBy(w * step, 0), ArrowRight: () => panBy(-w * step, 0),
    ArrowUp: () => panBy(0, h * step), ArrowDown: () => panBy(0, -h * step),
  };
  if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
});

// -- live events ------------------------------------------------------------------------
function setStatus(stateName, text) { statusEl.dataset.state = stateName; statusEl.textContent = text; }
function connect() {
  // One stream; a big sky's carries its area's box. The browser resumes by itself after a
  // drop (Last-Event-ID); a stream opened anew resumes from the last event seen.
  if (state.events) state.events.close();
  const params = new URLSearchParams({ topics: "stars,users" });
  if (state.area) params.set("bbox", boxParam(state.area));
  if (state.lastEventId) params.set("last_event_id", state.lastEventId);
  const events = state.events = new EventSource(`/events/stream?${params}`);
  events.onopen = () => setStatus("live", "live");
  events.onerror = () => {
    if (events.readyState !== EventSource.CLOSED) { setStatus("connecting", "reconnecting…"); return; }
    setStatus("offline", "offline");
    if (state.events === events) setTimeout(catchUp, 3000);
  };
  events.onmessage = (message) => {
    if (message.lastEventId) state.lastEventId = message.lastEventId;
    apply(JSON.parse(message.data));
  };
}
function apply(event) {
  if (event.type === "resync") { loadSky(); return; }
  if (event.topic !== "stars") return;
  if (event.type === "create" || event.type === "update") {
    if (inBox(state.area, event.data.x, event.data.y)) upsert(event.data);
  } else if (event.type === "delete") remove(event.data.id);
  else if (event.type === "clear") { state.stars.clear(); buttons.clear(); list.replaceChildren(); hideTooltip(); redraw(); }
}
// After the stream gave up (the server was away): what changed since the last event seen,
// by REST, then live again from there; only when that is no longer kept, everything anew.
async function catchUp() {
  if (!state.lastEventId) { await loadSky(); connect(); return; }
  try {
    let url = `/stars/changes?since=${encodeURIComponent(state.lastEventId)}`;
    while (url) {
      const answer = await fetch(url);
      if (answer.status === 410) { state.lastEventId = null; await loadSky(); connect(); return; }
      if (!answer.ok) throw new Error(String(answer.status));
      const body = await answer.json();
      body.changes.forEach(apply);
      state.lastEventId = body.last_event_id;
      url = nextPage(answer);
    }
    connect();
  } catch (error) {
    setTimeout(catchUp, 5000);
  }
}

async function start() {
  resize();
  window.addEventListener("resize", () => { resize(); redraw(); });
  try {
    const config = await (await fetch("/config.json", { cache: "no-store" })).json();
    state.config = { half_life: config.brightness_half_life, boost: config.like_boost, floor: config.min_brightness };
    state.skew = config.server_time - Date.now() / 1000;
  } catch (error) { /* the defaults above are the server's defaults */ }
  await loadSky();
  draw();
  document.body.dataset.ready = "true";
}
start();
