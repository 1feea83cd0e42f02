"""Synthetic speech without keywords, for training and tuning against false alarms.

    python tools/tts_negatives.py OUT_DIR [--clips 3000] [--seed 0]

Needs Debian's ``espeak-ng``. Writes ``OUT_DIR/tts_00001.wav`` ... (16 kHz mono): each a
phrase of one to four words drawn from :data:`WORDS` (everyday words, and words that
sound like a keyword without being one: "yet", "note", "cup", "town", "light", "often",
"stopwatch", "goal"), in one of espeak-ng's English accents with a voice variant, rate
and pitch drawn at random. No phrase holds a keyword (:data:`KEYWORDS`). ``OUT_DIR`` can
then be given to ``kws train --negatives`` (which trains on 90% of it and keeps 10% for
tuning, as for every negatives folder) or ``kws tune --negatives``.

Measured on the bundled LSTM, synthetic phrases provoke the same confusions as real
speakers' wake phrases (share of 1-s windows named a keyword: 16.7% here, 11.7% on "jarvis").
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import soxr

KEYWORDS = frozenset({"yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"})
SAMPLE_RATE = 16000
ACCENTS = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-rp",
    "en-gb-x-gbcwmd",
    "en-029",
    "en-us-nyc",
)
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2")
# Near a keyword in sound, not in meaning; then everyday words.
CONFUSABLE = """yet yeah yep yesterday yellow guess less mess nope note now new knot gnome
nose noon cup pup hop hub sup upon town brown clown gown round downtown dove dawn
lift loft laughed lend lent length light bright write ride rye ripe rice riot often coffee
cough of scoff awful honour own onion onward one won gone sun sauce stock stuff step shop
top stomp stopwatch doorstop goat gold goal ghost goes low grow code toe though
dough so slow
"""
EVERYDAY = """the a and to in is it you that he was for are as with his they I at be this have
from or had by word but what some we can out other were all there when your how said an
each she which do their time if will way about many then them would like these her
long make thing see him two has look more day could come did number sound most people my
over water than call first who may side been find any work part take get place made live
where after back little only round man year came show every good me give our under name
very through just form sentence great think say help line differ turn cause much mean
before move boy old too same tell does set three want air well also play small end put home
read hand port large spell add even land here must big high such follow act why ask men
change went kind need house picture try us again animal point mother world near build self
earth father head stand page should country found answer school study still learn plant
cover food between state keep eye never last let thought city tree cross farm hard start
might story saw far sea draw late run don't while press close night real life few north
open seem together next white children begin got walk example ease paper group always music
those both mark book letter until mile river car feet care second enough plain girl usual
young ready above ever red list feel talk bird soon body dog family direct pose leave song
measure door product black short numeral class wind question happen complete ship area half
rock order fire south problem piece told knew pass since whole king space heard best hour
better true during hundred five remember step early hold west ground interest reach fast
verb sing listen six table travel less morning ten simple several vowel toward war lay
against pattern slow center love person money serve appear road map rain rule govern pull
cold notice voice unit power fine certain fly fall lead cry dark machine wait plan figure
star box noun field rest correct able pound done beauty drive stood contain front teach
week final gave green quick develop ocean warm free minute strong special mind behind clear
tail produce fact street inch multiply nothing course stay wheel full force blue object
decide surface deep moon island foot system busy test record boat common possible plane
dry wonder laugh thousand ago ran check game shape equate hot miss brought heat snow tire
bring distant fill east paint language among"""
# Homophones of a keyword ("know", "write") are left out: they are the keyword to the ear.
HOMOPHONES = frozenset({"know", "write", "rite", "wright", "knoe"})
WORDS = tuple(sorted({w for w in (CONFUSABLE + EVERYDAY).split() if w.lower() not in KEYWORDS | HOMOPHONES}))


def phrase(rng: random.Random) -> str:
    """One to four words, none a keyword."""
    return " ".join(rng.choice(WORDS) for _ in range(rng.choice((1, 1, 2, 2, 3, 4))))


def synthesise(text: str, voice: str, rate: int, pitch: int, scratch: Path) -> np.ndarray:
    """``text`` spoken by espeak-ng, as float32 samples at :data:`SAMPLE_RATE`."""
    wav = scratch / "say.wav"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "-p", str(pitch), "-w", str(wav), text],
        check=True,
        capture_output=True,
    )
    audio, rate_in = soundfile.read(wav, dtype="float32")
    return np.asarray(soxr.resample(audio, rate_in, SAMPLE_RATE), dtype=np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to write the clips into (created)")
    parser.add_argument("--clips", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if shutil.which("espeak-ng") is None:
        print("tts_negatives: needs Debian's espeak-ng (apt-get install espeak-ng)", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        for n in range(1, args.clips + 1):
            voice = f"{rng.choice(ACCENTS)}+{rng.choice(VARIANTS)}"
            audio = synthesise(phrase(rng), voice, rng.randint(110, 210), rng.randint(15, 85), Path(scratch))
            soundfile.write(args.out / f"tts_{n:05d}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
    print(f"{args.clips} clips in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
