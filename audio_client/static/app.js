// The page of `audio-client ui`: a form per worker, built from its request's JSON Schema, then the job.
// No framework and no build step; the server (audio_client/ui.py) holds the keys and runs the jobs.
"use strict";

const $ = (id) => document.getElementById(id);
const HEADERS = { "X-Audio-Client": "page" };
const POLL_MS = 500;

function make(tag, attributes = {}, children = []) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  element.append(...children);
  return element;
}

// ---- Schema -> field kind -------------------------------------------------------------------------

function resolve(schema, defs) {
  if (schema && schema.$ref) return defs[schema.$ref.split("/").pop()] || {};
  return schema || {};
}

// Pydantic writes an optional field as anyOf [X, null]: the form offers X, and empty means "omitted".
function unwrap(property, defs) {
  const branches = (property.anyOf || [property]).map((branch) => resolve(branch, defs));
  const present = branches.filter((branch) => branch.type !== "null");
  const optional = present.length < branches.length;
  const inner = present.length === 1 ? present[0] : { anyOf: present };
  return { schema: { ...inner, title: property.title, description: property.description }, optional };
}

function kindOf(schema) {
  const isAudio = (s) => s.type === "string" && s.contentMediaType === "audio/*";
  if (schema.enum) return "choice";
  if (schema.type === "boolean") return "boolean";
  if (schema.type === "integer" || schema.type === "number") return "number";
  if (isAudio(schema)) return "audio";
  if (schema.type === "string") return (schema.maxLength || 0) > 200 ? "longtext" : "text";
  if (schema.type === "array" && schema.items) {
    if (schema.items.enum) return "choices";
    if (isAudio(schema.items)) return "audios";
    if (schema.items.type === "string") return "lines";
  }
  return "json"; // objects, lists of objects, mixed types: edited as JSON
}

function boundsOf(schema) {
  const step = schema.type === "integer" ? 1 : null;
  const min = schema.minimum ?? schema.exclusiveMinimum;
  const max = schema.maximum ?? schema.exclusiveMaximum;
  return { min, max, step, exclusiveMin: schema.minimum === undefined && schema.exclusiveMinimum !== undefined };
}

function hintFor(schema, property, optional) {
  const description = (schema.description || "").trim();
  const parts = [description && !/[.!?)]$/.test(description) ? `${description}.` : description];
  const { min, max } = boundsOf(schema);
  if (min !== undefined || max !== undefined) {
    const low = min === undefined ? "" : `${boundsOf(schema).exclusiveMin ? ">" : ""}${min}`;
    const high = max === undefined ? "" : `${max}`;
    parts.push(`Range ${low}…${high}.`);
  }
  if (schema.maxLength) parts.push(`Up to ${schema.maxLength} characters.`);
  if (schema.maxItems) parts.push(`Up to ${schema.maxItems} items.`);
  if (property.default !== undefined && property.default !== null && property.default !== "") {
    parts.push(`Default: ${JSON.stringify(property.default)}.`);
  } else if (optional) parts.push("Empty: omitted.");
  return parts.filter(Boolean).join(" ");
}

// A number typed in a text box: JSON numbers are sent as numbers, anything else as typed (the worker
// then names the field and the rule).
function numberOrText(text) {
  const trimmed = text.trim();
  if (trimmed === "") return undefined;
  const parsed = Number(trimmed);
  return /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(trimmed) && Number.isFinite(parsed) ? parsed : trimmed;
}

// ---- Controls: each knows how to build itself, read a value (and files) and write one ------------

let controlCount = 0;

function control(name, property, required, defs) {
  const { schema, optional } = unwrap(property, defs);
  const kind = kindOf(schema);
  const id = `field-${name}-${++controlCount}`;
  const wrapper = make("div", { class: `field field-${kind}`, "data-field": name, "data-kind": kind });
  const label = make("label", { for: id, text: `${property.title || name}${required ? " *" : ""}` });
  const hint = make("small", { class: "hint", id: `${id}-hint`, text: hintFor(schema, property, optional) });
  const build = BUILDERS[kind];
  const parts = build(id, name, schema, property, optional);
  parts.input.setAttribute("aria-describedby", hint.id);
  wrapper.append(label, parts.element, hint);
  return { name, element: wrapper, read: parts.read, write: parts.write, defaultValue: property.default };
}

const BUILDERS = {
  number(id, name, schema, property) {
    const { min, max, step, exclusiveMin } = boundsOf(schema);
    const text = make("input", {
      id, name, type: "text", inputmode: step === 1 ? "numeric" : "decimal", autocomplete: "off",
    });
    const row = make("div", { class: "number-row" }, [text]);
    let slider = null;
    const span = max - min;
    // A slider where the range is a sensible one to drag (not a seed's 2^32), beside the exact box.
    if (Number.isFinite(span) && span > 0 && span <= 100000) {
      const sliderStep = step || 10 ** Math.floor(Math.log10(span / 200));
      slider = make("input", {
        type: "range", min: exclusiveMin ? min + sliderStep : min, max, step: sliderStep, "aria-label": `${property.title || name} slider`, tabindex: "-1",
      });
      slider.addEventListener("input", () => {
        text.value = String(Number(slider.value));
        sync();
      });
      text.addEventListener("input", sync);
      row.prepend(slider);
    }
    // The slider follows the box; an empty box (an omitted optional field) dims it.
    function sync() {
      if (!slider) return;
      const empty = text.value.trim() === "";
      slider.classList.toggle("unset", empty);
      if (empty) slider.value = String((min + max) / 2);
      else if (Number.isFinite(Number(text.value))) slider.value = text.value.trim();
    }
    return {
      element: row,
      input: text,
      read: () => ({ value: numberOrText(text.value) }),
      write(value) {
        text.value = value === undefined || value === null ? "" : String(value);
        sync();
      },
    };
  },

  choice(id, name, schema, property, optional) {
    const select = make("select", { id, name });
    if (optional || property.default === undefined) select.append(make("option", { value: "", text: "(not set)" }));
    schema.enum.forEach((value, index) => select.append(make("option", { value: String(index), text: String(value) })));
    return {
      element: select,
      input: select,
      read: () => ({ value: select.value === "" ? undefined : schema.enum[Number(select.value)] }),
      write(value) {
        const index = schema.enum.indexOf(value);
        select.value = index < 0 ? "" : String(index);
      },
    };
  },

  boolean(id, name, schema, property) {
    const box = make("input", { id, name, type: "checkbox" });
    return {
      element: box,
      input: box,
      // Sent when it differs from the default: the request stays as short as what was changed.
      read: () => ({ value: box.checked === property.default ? undefined : box.checked }),
      write(value) {
        box.checked = value === true;
      },
    };
  },

  text(id, name, schema) {
    const input = make("input", { id, name, type: "text", autocomplete: "off" });
    return textLike(input, schema);
  },

  longtext(id, name, schema) {
    const area = make("textarea", { id, name, rows: schema.maxLength > 2000 ? 6 : 3 });
    return textLike(area, schema);
  },

  lines(id, name) {
    const area = make("textarea", { id, name, rows: 3, placeholder: "one item per line" });
    return {
      element: area,
      input: area,
      read() {
        const items = area.value.split("\n").map((line) => line.trim()).filter(Boolean);
        return { value: items.length ? items : undefined };
      },
      write(value) {
        area.value = Array.isArray(value) ? value.join("\n") : value ?? "";
      },
    };
  },

  choices(id, name, schema) {
    const group = make("fieldset", { id, class: "choices", tabindex: "-1" });
    const boxes = schema.items.enum.map((value) => {
      const box = make("input", { type: "checkbox", value: String(value) });
      group.append(make("label", { class: "choice" }, [box, ` ${value}`]));
      return [value, box];
    });
    return {
      element: group,
      input: group,
      read() {
        const picked = boxes.filter(([, box]) => box.checked).map(([value]) => value);
        return { value: picked.length ? picked : undefined };
      },
      write(value) {
        for (const [item, box] of boxes) box.checked = Array.isArray(value) && value.includes(item);
      },
    };
  },

  audio(id, name) {
    const slot = audioSlot(id, name);
    return {
      element: slot.element,
      input: slot.text,
      read() {
        const file = slot.file.files[0];
        return file ? { value: undefined, files: [[name, file]] } : { value: slot.text.value.trim() || undefined };
      },
      write(value) {
        slot.set(value);
      },
    };
  },

  audios(id, name, schema) {
    const list = make("div", { class: "audio-list", id });
    const slots = [];
    const add = make("button", { type: "button", class: "small", text: "Add another" });
    const addSlot = () => {
      if (slots.length >= (schema.maxItems || 16)) return;
      const slot = audioSlot(`${id}-${slots.length}`, `${name}.${slots.length}`);
      slots.push(slot);
      list.insertBefore(slot.element, add);
    };
    add.addEventListener("click", addSlot);
    list.append(add);
    addSlot();
    return {
      element: list,
      input: list,
      read() {
        const value = [];
        const files = [];
        for (const slot of slots) {
          const file = slot.file.files[0];
          if (file) {
            files.push([`${name}.${value.length}`, file]);
            value.push(null); // the server puts the file there
          } else if (slot.text.value.trim()) value.push(slot.text.value.trim());
        }
        return { value: value.length ? value : undefined, files };
      },
      write(value) {
        const items = value === undefined || value === null ? [] : Array.isArray(value) ? value : [value];
        while (slots.length < Math.max(items.length, 1)) addSlot();
        slots.forEach((slot, index) => slot.set(items[index]));
      },
    };
  },

  json(id, name) {
    const area = make("textarea", { id, name, rows: 4, class: "json", placeholder: "JSON", spellcheck: "false" });
    return {
      element: area,
      input: area,
      read() {
        if (!area.value.trim()) return { value: undefined };
        try {
          return { value: JSON.parse(area.value) };
        } catch (error) {
          throw new Error(`${name}: not valid JSON (${error.message})`);
        }
      },
      write(value) {
        area.value = value === undefined || value === null ? "" : JSON.stringify(value, null, 2);
      },
    };
  },
};

function textLike(input, schema) {
  if (schema.maxLength) input.setAttribute("maxlength", String(schema.maxLength));
  return {
    element: input,
    input,
    read: () => ({ value: input.value === "" ? undefined : input.value }),
    write(value) {
      input.value = value ?? "";
    },
  };
}

// Audio: a URL, an s3:// URI (or a preset name, where the worker has them), or a local file.
function audioSlot(id, label) {
  const text = make("input", { id, type: "text", placeholder: "https://…, s3://… or a file below", autocomplete: "off" });
  const file = make("input", { type: "file", accept: "audio/*", "aria-label": `${label} file` });
  const clear = make("button", { type: "button", class: "small", text: "Clear" });
  clear.addEventListener("click", () => {
    text.value = "";
    file.value = "";
  });
  const element = make("div", { class: "audio-slot" }, [text, make("div", { class: "file-row" }, [file, clear])]);
  return {
    element,
    text,
    file,
    set(value) {
      if (value === "<provided>") return; // a file sent before: keep what is picked
      text.value = typeof value === "string" ? value : "";
      file.value = "";
    },
  };
}

// ---- The page -------------------------------------------------------------------------------------

const state = { workers: [], worker: null, controls: [], job: null, audio: null };

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...HEADERS, ...(options.headers || {}) } });
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

function showWorker(name) {
  const worker = state.workers.find((entry) => entry.name === name);
  state.worker = worker;
  $("request-title").textContent = worker.name;
  const target = $("target");
  target.className = `target ${worker.target ? "" : "missing"}`;
  target.textContent = worker.target
    ? `Runs on ${worker.target}${worker.progress_updates ? "" : " (the SDK's test server: no progress updates)"}.`
    : worker.target_error;
  const fields = $("fields");
  const common = $("common-fields");
  fields.replaceChildren();
  common.replaceChildren();
  state.controls = [];
  const schema = worker.schema;
  const defs = schema.$defs || {};
  const required = new Set(schema.required || []);
  const names = Object.keys(schema.properties);
  // The worker's own fields first; those every worker shares (format, seed, S3) in the group below.
  const own = names.filter((field) => !worker.common_fields.includes(field));
  const shared = names.filter((field) => worker.common_fields.includes(field));
  for (const [group, list] of [[fields, own], [common, shared]]) {
    for (const field of list) {
      const item = control(field, schema.properties[field], required.has(field), defs);
      state.controls.push(item);
      group.append(item.element);
    }
  }
  $("submit").disabled = !worker.target;
  fill(worker.example);
}

function fill(values) {
  for (const item of state.controls) {
    item.write(Object.hasOwn(values, item.name) ? values[item.name] : item.defaultValue);
  }
}

function readForm() {
  const input = {};
  const files = [];
  for (const item of state.controls) {
    const { value, files: parts = [] } = item.read();
    if (value !== undefined) input[item.name] = value;
    files.push(...parts);
  }
  return { input, files };
}

function resetJobView() {
  $("job").hidden = false;
  $("job").dataset.status = "SUBMITTING";
  for (const id of ["job-error", "parameters-box", "raw-box", "stream-info"]) $(id).hidden = true;
  $("outputs").replaceChildren();
  $("job-error").textContent = "";
  setProgress(null, "submitting");
}

function setProgress(fraction, stage) {
  const bar = $("progress-bar");
  if (typeof fraction === "number") bar.value = fraction;
  else bar.removeAttribute("value"); // indeterminate
  const box = $("progress-box");
  box.dataset.stage = stage || "";
  box.dataset.fraction = typeof fraction === "number" ? String(fraction) : "";
  $("stage").textContent = `${stage || ""}${typeof fraction === "number" ? ` ${(fraction * 100).toFixed(0)}%` : ""}`;
}

function showError(message) {
  const box = $("job-error");
  box.hidden = false;
  box.textContent = message;
}

async function submit(event) {
  event.preventDefault();
  let request;
  try {
    request = readForm();
  } catch (error) {
    resetJobView();
    setProgress(0, "not sent");
    showError(error.message);
    return;
  }
  resetJobView();
  $("status").textContent = "Submitting…";
  if (window.matchMedia("(max-width: 899px)").matches) $("job").scrollIntoView({ block: "start" }); // below the form
  // Streamed audio plays through Web Audio; the context must start in the click that asked for it.
  if (state.audio) state.audio.context.close();
  state.audio = request.input.stream === true ? newStreamPlayer() : null;
  const form = new FormData();
  form.append("input", JSON.stringify(request.input));
  for (const [part, file] of request.files) form.append(part, file, file.name);
  try {
    const { id } = await api(`/api/jobs/${state.worker.name}`, { method: "POST", body: form });
    state.job = { id, worker: state.worker, chunks: 0 };
    $("cancel").hidden = false;
    poll(state.job);
  } catch (error) {
    $("status").textContent = "Not started.";
    setProgress(0, "not sent");
    showError(error.message);
  }
}

async function poll(job) {
  while (state.job === job) {
    let view;
    try {
      view = await api(`/api/jobs/${job.id}?chunks_from=${job.chunks}`);
    } catch (error) {
      showError(error.message);
      return;
    }
    job.chunks += view.chunks.length;
    for (const chunk of view.chunks) playChunk(chunk);
    render(view, job);
    if (["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"].includes(view.status)) return;
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function render(view, job) {
  $("status").textContent = `${view.status}${view.job_id ? ` · job ${view.job_id}` : ""}`;
  $("job").dataset.status = view.status;
  const done = ["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"].includes(view.status);
  const update = view.progress || {};
  if (done) setProgress(view.status === "COMPLETED" ? 1 : $("progress-bar").value || 0, view.status.toLowerCase());
  else if (update.stage) setProgress(update.progress, update.stage);
  else if (view.status === "IN_QUEUE" || view.status === "IN_PROGRESS") {
    setProgress(null, job.worker.progress_updates ? "waiting for the worker" : "running on the local test server");
  }
  if (view.chunk_count) {
    const info = $("stream-info");
    info.hidden = false;
    info.dataset.chunks = String(view.chunk_count);
    info.dataset.seconds = String(state.audio ? state.audio.seconds : 0);
    info.textContent = `Streaming: ${view.chunk_count} chunks, ${(state.audio ? state.audio.seconds : 0).toFixed(2)} s received`;
  }
  $("cancel").hidden = done;
  if (!done) return;
  if (view.error) showError(view.error);
  const result = view.result || {};
  $("outputs").replaceChildren(...view.outputs.map(outputFigure));
  if (result.parameters) {
    $("parameters-box").hidden = false;
    $("parameters").textContent = JSON.stringify(result.parameters, null, 2);
    $("reuse").onclick = () => fill(result.parameters);
  }
  if (view.result) {
    $("raw-box").hidden = false;
    $("raw").textContent = JSON.stringify(view.result, null, 2);
  }
}

function outputFigure(output) {
  const audio = make("audio", { controls: true, preload: "metadata", src: output.src });
  const facts = [
    `#${output.index}`,
    output.duration_seconds !== undefined ? `${output.duration_seconds} s` : null,
    output.format,
    output.sample_rate ? `${output.sample_rate} Hz` : null,
    output.channels ? `${output.channels} ch` : null,
  ].filter(Boolean);
  const link = make("a", { href: `${output.src}?download=1`, download: "", text: "Download" });
  return make("figure", { class: "output", "data-index": output.index, "data-duration": output.duration_seconds }, [
    audio,
    make("figcaption", {}, [facts.join(" · "), " ", link]),
  ]);
}

// ---- Streamed audio: each chunk scheduled right after the previous one -----------------------------

function newStreamPlayer() {
  const Context = window.AudioContext || window.webkitAudioContext;
  const context = new Context();
  context.resume(); // a browser that made it suspended despite the click: ask once more, inside the click
  return { context, next: 0, seconds: 0, scheduled: 0, queue: Promise.resolve() };
}

function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index++) bytes[index] = binary.charCodeAt(index);
  return bytes;
}

function playChunk(chunk) {
  const player = state.audio;
  if (!player) return;
  const bytes = base64Bytes(chunk.audio_base64);
  player.seconds += chunk.frames / chunk.sample_rate;
  player.queue = player.queue.then(async () => {
    if (player !== state.audio) return; // a newer job took over
    let buffer;
    if (chunk.format === "pcm_s16le") {
      const samples = new DataView(bytes.buffer);
      const channels = chunk.channels;
      const frames = bytes.length / 2 / channels;
      buffer = player.context.createBuffer(channels, frames, chunk.sample_rate);
      for (let channel = 0; channel < channels; channel++) {
        const data = buffer.getChannelData(channel);
        for (let frame = 0; frame < frames; frame++) {
          data[frame] = samples.getInt16((frame * channels + channel) * 2, true) / 32768;
        }
      }
    } else {
      buffer = await player.context.decodeAudioData(bytes.buffer);
    }
    const source = player.context.createBufferSource();
    source.buffer = buffer;
    source.connect(player.context.destination);
    const start = Math.max(player.context.currentTime + 0.05, player.next);
    source.start(start);
    player.next = start + buffer.duration;
    player.scheduled += 1;
    $("stream-info").dataset.scheduled = String(player.scheduled);
  }).catch((error) => showError(`a streamed chunk could not be played: ${error.message}`));
}

async function main() {
  state.workers = await api("/api/workers");
  const select = $("worker");
  for (const worker of state.workers) {
    select.append(make("option", { value: worker.name, text: worker.target ? worker.name : `${worker.name} (no target)` }));
  }
  const first = state.workers.find((worker) => worker.target) || state.workers[0];
  select.value = first.name;
  select.addEventListener("change", () => showWorker(select.value));
  $("form").addEventListener("submit", submit);
  $("example").addEventListener("click", () => fill(state.worker.example));
  $("defaults").addEventListener("click", () => fill({}));
  $("cancel").addEventListener("click", async () => {
    try {
      await api(`/api/jobs/${state.job.id}/cancel`, { method: "POST" });
    } catch (error) {
      showError(error.message);
    }
  });
  showWorker(first.name);
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  document.body.prepend(make("p", { class: "error", text: `The page could not load: ${error.message}` }));
});
