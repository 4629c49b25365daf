/** A model folder's tokenizer and chat template: messages -> token ids, as `apply_chat_template`. */
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { FormatError } from "../errors.ts";
import type { Message } from "../data/pairs.ts";

/** Tokenizes conversations with the model's chat template. */
export interface ChatTokenizer {
  /** token ids of the rendered conversation (no extra special tokens, like HF's apply_chat_template) */
  encode(messages: Message[]): number[];
  /** the text the template renders */
  render(messages: Message[]): string;
  /** id used to pad batches */
  padId: number;
}

async function readJson(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new FormatError(
        file,
        "file not found (a model folder needs tokenizer.json, tokenizer_config.json, config.json and model.onnx)",
      );
    }
    throw e;
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
  }
}

function tokenText(t: unknown): string | undefined {
  if (typeof t === "string") return t;
  if (t && typeof t === "object" && typeof (t as { content?: unknown }).content === "string") {
    return (t as { content: string }).content;
  }
  return undefined;
}

/** Python's str.strip family: strips the characters in `chars`, or whitespace when none are given. */
function pyStrip(s: unknown, chars: unknown, side: "l" | "r" | "both"): unknown {
  if (typeof s !== "string") return s;
  const set = typeof chars === "string" ? new Set(chars) : undefined;
  const drop = (c: string) => (set ? set.has(c) : /\s/.test(c));
  let a = 0, b = s.length;
  if (side !== "r") { while (a < b && drop(s[a])) a++; }
  if (side !== "l") { while (b > a && drop(s[b - 1])) b--; }
  return s.slice(a, b);
}

const STRIP_HELPERS: Record<string, (s: unknown, chars?: unknown) => unknown> = {
  __py_strip: (s, c) => pyStrip(s, c, "both"),
  __py_lstrip: (s, c) => pyStrip(s, c, "l"),
  __py_rstrip: (s, c) => pyStrip(s, c, "r"),
};

/**
 * @huggingface/jinja ignores the argument of `strip`/`lstrip`/`rstrip` (it always trims
 * whitespace), but chat templates rely on Python's meaning: Qwen3's renders
 * `content.lstrip('\n')`, which must keep a leading space. Rewrites each such method call
 * in the parsed template into a call of a helper with Python's semantics.
 */
function pythonStripCalls(node: unknown): void {
  if (!node || typeof node !== "object") return;
  if (Array.isArray(node)) return node.forEach(pythonStripCalls);
  const n = node as Record<string, unknown>;
  for (const v of Object.values(n)) pythonStripCalls(v);
  const callee = n.callee as Record<string, unknown> | undefined;
  const prop = callee?.property as Record<string, unknown> | undefined;
  if (
    n.type === "CallExpression" && callee?.type === "MemberExpression" && !callee.computed &&
    prop?.type === "Identifier" && ["strip", "lstrip", "rstrip"].includes(prop.value as string) &&
    Array.isArray(n.args) && n.args.length === 1
  ) {
    n.args = [callee.object, n.args[0]];
    n.callee = { type: "Identifier", value: `__py_${prop.value}` };
  }
}

/** Loads `tokenizer.json` + `tokenizer_config.json` (with `chat_template`) from a model folder. */
export async function loadChatTokenizer(dir: string): Promise<ChatTokenizer> {
  const tokJson = await readJson(`${dir}/tokenizer.json`);
  const config = await readJson(`${dir}/tokenizer_config.json`);
  let templateText = config.chat_template;
  if (Array.isArray(templateText)) {
    templateText = (templateText.find((t) => t?.name === "default") ?? templateText[0])?.template;
  }
  if (typeof templateText !== "string") {
    throw new FormatError(
      `${dir}/tokenizer_config.json`,
      "has no chat_template (the encoder applies the model's chat template)",
    );
  }
  const tokenizer = new Tokenizer(tokJson, config);
  const template = new Template(templateText);
  pythonStripCalls(template.parsed);
  const bos = tokenText(config.bos_token) ?? "", eos = tokenText(config.eos_token) ?? "";
  const idOf = (t: string | undefined) => {
    if (!t) return undefined;
    const ids = tokenizer.encode(t, { add_special_tokens: false }).ids;
    return ids.length === 1 ? ids[0] : undefined;
  };
  const padId = idOf(tokenText(config.pad_token)) ?? idOf(eos) ?? 0;
  const render = (messages: Message[]) =>
    template.render({
      ...STRIP_HELPERS,
      messages,
      bos_token: bos,
      eos_token: eos,
      add_generation_prompt: false,
    });
  return {
    render,
    encode: (messages) => tokenizer.encode(render(messages), { add_special_tokens: false }).ids,
    padId,
  };
}
