// Star Map: a live sky. No build step, no dependencies, nothing from elsewhere.
"use strict";

const state = {
  config: { half_life: 3600, boost: 20, floor: 20 },
  skew: 0, // seconds the server's clock is ahead of this one (from /config.json)
  stars: new Map(), // id → {id, x, y, message, likes, base (brightness at t0), t0 (server epoch s)}
  hover: null,
  focused: null,
};
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
function toScreen(x, y) {
  return [((x + 1) / 2) * sky.clientWidth, ((1 - y) / 2) * sky.clientHeight];
}
function toSky(px, py) {
  const x = (px / sky.clientWidth) * 2 - 1;
  const y = 1 - (py / sky.clientHeight) * 2;
  return [Math.max(-1, Math.min(1, x)), Math.max(-1, Math.min(1, y))];
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
  let drawn = 0;
  for (const star of state.stars.values()) {
    const b = brightnessNow(star, now) / 100;
    const [sx, sy] = toScreen(star.x, star.y);
    const r = radius(star);
    const selected = star === state.hover || star === state.focused;
    ctx.save();
    ctx.shadowColor = `rgba(255, 230, 160, ${0.4 + b * 0.6})`;
    ctx.shadowBlur = 6 + b * 22;
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
function renderItem(star) {
  let button = list.querySelector(`button[data-id="${CSS.escape(star.id)}"]`);
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
  }
  button.textContent = label(star);
  button.setAttribute("aria-label", `Star: ${label(star)}. Press Enter to like.`);
  button.dataset.likes = String(star.likes);
  if (state.hover === star || state.focused === star) showTooltip(star);
}
function removeItem(id) {
  const button = list.querySelector(`button[data-id="${CSS.escape(id)}"]`);
  if (button) button.parentElement.remove();
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
async function refetch() {
  const answer = await fetch("/stars");
  if (!answer.ok) return;
  const stars = await answer.json();
  const fresh = new Set(stars.map((s) => s.id));
  for (const id of [...state.stars.keys()]) if (!fresh.has(id)) remove(id);
  for (const star of stars) {
    const known = state.stars.get(star.id);
    // An update event may have overtaken the list: likes only grow, keep the newer.
    if (!known || known.likes <= star.likes) upsert(star);
  }
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
  if (star) { showTooltip(star, event.clientX, event.clientY); like(star.id); return; }
  const [x, y] = toSky(event.clientX, event.clientY);
  openForm(x, y);
});

// -- live events ------------------------------------------------------------------------
function setStatus(stateName, text) { statusEl.dataset.state = stateName; statusEl.textContent = text; }
function connect() {
  // The browser resumes by itself after a drop, sending Last-Event-ID.
  const events = new EventSource("/events/stream?topics=stars,users");
  events.onopen = () => setStatus("live", "live");
  events.onerror = () => setStatus(events.readyState === EventSource.CLOSED ? "offline" : "connecting",
                                   events.readyState === EventSource.CLOSED ? "offline" : "reconnecting…");
  events.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "resync") { refetch(); return; }
    if (event.topic !== "stars") return;
    if (event.type === "create" || event.type === "update") upsert(event.data);
    else if (event.type === "delete") remove(event.data.id);
    else if (event.type === "clear") { state.stars.clear(); list.replaceChildren(); hideTooltip(); redraw(); }
  };
}

async function start() {
  resize();
  window.addEventListener("resize", () => { resize(); redraw(); });
  try {
    const config = await (await fetch("/config.json", { cache: "no-store" })).json();
    state.config = { half_life: config.brightness_half_life, boost: config.like_boost, floor: config.min_brightness };
    state.skew = config.server_time - Date.now() / 1000;
  } catch (error) { /* the defaults above are the server's defaults */ }
  connect();
  await refetch();
  draw();
  document.body.dataset.ready = "true";
}
start();
