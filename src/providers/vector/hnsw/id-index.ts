/**
 * String id -> label by open addressing over an Int32Array, keyed through `ids` (label -> id), which the
 * collection keeps anyway: a JS Map would add about 60 bytes per row next to a 560-byte graph node.
 */
export class IdIndex {
  private table = new Int32Array(16).fill(-1);
  size = 0;

  constructor(private readonly ids: Array<string | null>) {}

  private slot(id: string): number {
    let h = 0x811c9dc5;
    for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 0x01000193);
    return (h >>> 0) & (this.table.length - 1);
  }

  private find(id: string): number {
    const mask = this.table.length - 1;
    for (let i = this.slot(id); ; i = (i + 1) & mask) {
      const label = this.table[i];
      if (label < 0 || this.ids[label] === id) return i;
    }
  }

  get(id: string): number | undefined {
    const label = this.table[this.find(id)];
    return label < 0 ? undefined : label;
  }

  has(id: string): boolean {
    return this.table[this.find(id)] >= 0;
  }

  /** Call once `ids[label] === id`. */
  set(id: string, label: number): void {
    if ((this.size + 1) * 2 > this.table.length) this.grow();
    this.table[this.find(id)] = label;
    this.size++;
  }

  /** Call while `ids[label]` still holds the id. Backward-shift deletion keeps probe runs unbroken without tombstones. */
  delete(id: string): void {
    const mask = this.table.length - 1;
    let hole = this.find(id);
    if (this.table[hole] < 0) return;
    for (let j = (hole + 1) & mask; this.table[j] >= 0; j = (j + 1) & mask) {
      const home = this.slot(this.ids[this.table[j]]!);
      const between = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (!between) {
        this.table[hole] = this.table[j];
        hole = j;
      }
    }
    this.table[hole] = -1;
    this.size--;
  }

  private grow(): void {
    const old = this.table;
    this.table = new Int32Array(old.length * 2).fill(-1);
    for (const label of old) if (label >= 0) this.table[this.find(this.ids[label]!)] = label;
  }
}
