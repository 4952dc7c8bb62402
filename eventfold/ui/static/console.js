// The eventfold console's live parts: the projections' lag chart (polled) and the tail of
// the global log (server-sent events). Everything else is plain server-rendered HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#2f5fb3", "#b3261e", "#1f7a3d", "#9a6700", "#7b3fb3", "#00838f", "#c2185b"];
const SAMPLES = 60;        // points kept per projection: 2 minutes at one every 2 s
const POLL_MS = 2000;

function element(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function formatSeconds(seconds) {
  if (seconds < 10) return seconds.toFixed(1) + "s";
  const whole = Math.round(seconds);
  if (whole < 60) return whole + "s";
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return minutes + "m" + String(whole % 60).padStart(2, "0") + "s";
  return Math.floor(minutes / 60) + "h" + String(minutes % 60).padStart(2, "0") + "m";
}

// The top of the chart: 2, 4, 10, 20, 40, 100... at or above the highest value, so the
// middle line is a whole number too.
function scale(highest) {
  let magnitude = 1;
  while (magnitude * 10 < highest) magnitude *= 10;
  for (const step of [2, 4, 10]) {
    if (step * magnitude >= highest) return step * magnitude;
  }
  return 10 * magnitude;
}

function followLag(svg) {
  const history = new Map();   // name -> [events behind, ...], oldest first
  const legend = document.getElementById("lag-legend");

  function updateTable(entry) {
    const row = document.querySelector(`#projections tr[data-name="${CSS.escape(entry.name)}"]`);
    if (!row) return;
    const cell = (field) => row.querySelector(`[data-field="${field}"]`);
    cell("state").textContent = entry.state;
    cell("state").className = "state " + entry.state;
    cell("holder").textContent = entry.holder || "-";
    cell("position").textContent = entry.position;
    cell("events_behind").textContent = entry.events_behind + (entry.events_behind_exact ? "" : "+");
    cell("seconds_behind").textContent = formatSeconds(entry.seconds_behind);
    cell("rate").textContent = entry.rate.toFixed(1);
  }

  function draw() {
    const width = 720, height = 220, left = 44, bottom = 18, top = 8;
    const peak = scale(Math.max(...[...history.values()].flat()));
    svg.replaceChildren();
    for (const fraction of [0, 0.5, 1]) {
      const y = top + (height - top - bottom) * (1 - fraction);
      svg.append(element("line", {x1: left, x2: width, y1: y, y2: y, stroke: "#dde2e8"}));
      svg.append(element("text", {x: left - 6, y: y + 4, "text-anchor": "end",
        "font-size": 11, fill: "#6a7380"}, String(peak * fraction)));
    }
    svg.append(element("text", {x: width, y: height - 4, "text-anchor": "end",
      "font-size": 11, fill: "#6a7380"}, "now"));
    legend.replaceChildren();
    [...history.entries()].forEach(([name, values], index) => {
      const colour = COLOURS[index % COLOURS.length];
      const step = (width - left) / (SAMPLES - 1);
      const points = values.map((value, i) => {
        const x = width - (values.length - 1 - i) * step;
        const y = top + (height - top - bottom) * (1 - value / peak);
        return `${x.toFixed(1)},${y.toFixed(1)}`;
      });
      svg.append(element("polyline", {points: points.join(" "), fill: "none", stroke: colour,
        "stroke-width": 2, "data-name": name}));
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = colour;
      item.append(swatch, `${name}: ${values[values.length - 1]} behind`);
      legend.append(item);
    });
  }

  async function sample() {
    try {
      const response = await fetch(svg.dataset.source, {cache: "no-store"});
      if (!response.ok) throw new Error(response.status + " " + response.statusText);
      const body = await response.json();
      for (const entry of body.projections) {
        const values = history.get(entry.name) || [];
        values.push(entry.events_behind);
        if (values.length > SAMPLES) values.shift();
        history.set(entry.name, values);
        updateTable(entry);
      }
      draw();
      svg.dataset.samples = String(Number(svg.dataset.samples || 0) + 1);
    } catch (error) {
      legend.textContent = "cannot sample the lag: " + error.message + " (retrying)";
    }
    setTimeout(sample, POLL_MS);
  }

  sample();
}

function followTail(table) {
  const body = table.querySelector("tbody");
  const status = document.getElementById("tail-status");
  const source = new EventSource(table.dataset.source);
  const KEEP = 500;

  source.onopen = () => { status.textContent = "following"; };
  source.onerror = () => { status.textContent = "reconnecting…"; };
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    const row = document.createElement("tr");
    row.className = "fresh";
    const link = document.createElement("a");
    link.href = table.dataset.event + "?" + new URLSearchParams(
      {stream: event.stream_id, version: event.stream_version});
    link.textContent = `${event.stream_id}@${event.stream_version}`;
    const cells = [event.position, event.recorded_at, link,
      `${event.event_type} v${event.schema_version}`, event.data];
    cells.forEach((value, index) => {
      const cell = document.createElement("td");
      if (index === 0) cell.className = "num";
      if (index === 4) { const code = document.createElement("code"); code.textContent = value; cell.append(code); }
      else cell.append(value);
      row.append(cell);
    });
    body.prepend(row);   // newest first
    while (body.rows.length > KEEP) body.deleteRow(-1);
  };
}

document.addEventListener("DOMContentLoaded", () => {
  const chart = document.getElementById("lag-chart");
  if (chart) followLag(chart);
  const tail = document.getElementById("tail");
  if (tail) followTail(tail);
});
