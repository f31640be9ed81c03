/**
 * References written `name@tag`: a feature or source variant (`name@variant`), a feature through an alias
 * (`feature@alias`) or a model version (`name@version`). Every place that writes or reads one goes through here.
 */

/** `name@tag`. */
export function formatRef(name: string, tag: string): string {
  return `${name}@${tag}`;
}

/** `name@variant` of a feature or source variant, `name@version` of a model. */
export function refOf(x: { name: string; variant: string } | { name: string; version: string }): string {
  return formatRef(x.name, 'variant' in x ? x.variant : x.version);
}

/** Splits a reference at its first `@`; `tag` is undefined when there is none (`name` alone). */
export function parseRef(ref: string): { name: string; tag: string | undefined } {
  const at = ref.indexOf('@');
  return at < 0 ? { name: ref, tag: undefined } : { name: ref.slice(0, at), tag: ref.slice(at + 1) };
}

/** `name@tag` with both parts non-empty, split; undefined for anything else. */
export function parseFullRef(ref: string): { name: string; tag: string } | undefined {
  const { name, tag } = parseRef(ref);
  return name && tag ? { name, tag } : undefined;
}
