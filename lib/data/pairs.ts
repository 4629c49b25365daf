/** Dataset-neutral preference pairs, before encoding. */

/** One chat message. */
export interface Message {
  role: "system" | "user" | "assistant";
  content: string;
}

/** A user's preference pair with its context. */
export interface RawPair {
  user: string;
  conversationId: string | number;
  /** the context: a message list (PRISM) or the post text (Reddit) */
  prompt: Message[] | string;
  chosen: string;
  rejected: string;
  split?: "train" | "val";
}

/** The conversation to encode for one reply: the prompt plus the reply as the assistant's turn. */
export function conversationOf(prompt: Message[] | string, reply: string): Message[] {
  const ctx: Message[] = typeof prompt === "string" ? [{ role: "user", content: prompt }] : prompt;
  return [...ctx, { role: "assistant", content: reply }];
}

/** Counts printed by the preprocessors. */
export interface PairStats {
  users: number;
  conversations: number;
  pairs: number;
  [detail: string]: number;
}
