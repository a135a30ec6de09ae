#!/usr/bin/env python3
"""Print the table of code points whose Unicode full case folding differs from
their lowercase mapping, for src/util/casefold.rs (FOLD_EXCEPTIONS)."""
import sys
import unicodedata

rows = []
for cp in range(0x80, 0x110000):
    if 0xD800 <= cp < 0xE000:
        continue
    c = chr(cp)
    if c.casefold() != c.lower():
        rows.append((cp, c.casefold()))
print(f"// Unicode {unicodedata.unidata_version}: {len(rows)} entries.")
print("static FOLD_EXCEPTIONS: &[(u32, &str)] = &[")
for cp, f in rows:
    esc = "".join(f"\\u{{{ord(x):04x}}}" for x in f)
    print(f'    (0x{cp:04x}, "{esc}"),')
print("];")
