# heisen -- build, test, demo, install.
#   make            library (cdylib + staticlib) and the C programs
#   make test       every test: Rust, C (also under valgrind), Python, programs, harness
#   make demo       the demo (README's first command)
#   make install PREFIX=/usr/local
#   make bench | make soak | make fuzz

PREFIX     ?= /usr/local
DESTDIR    ?=
CARGO      ?= cargo
CC         ?= cc
LIBDIR     := target/release
ABI        := 1
VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
SONAME     := libheisen.so.$(ABI)

.PHONY: all lib test demo install uninstall bench soak fuzz clean deps
all: lib examples-c

# The library; programs record NEEDED libheisen.so.1 (the SONAME), so the build directory gets
# that link too.
lib: $(LIBDIR)/$(SONAME)
$(LIBDIR)/libheisen.so $(LIBDIR)/libheisen.a: FORCE
	$(CARGO) build --release
$(LIBDIR)/$(SONAME): $(LIBDIR)/libheisen.so
	ln -sf libheisen.so $@
FORCE:

include examples/c/rules.mk
examples-c: lib

deps:
	scripts/install-deps.sh --fuzz

test: deps all
	scripts/test.sh

demo: deps all
	DEMO_SKIP_BUILD=1 scripts/demo.sh

bench: all
	bench/run.sh

soak: all
	scripts/soak.sh

fuzz:
	scripts/fuzz.sh

install: lib
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 include/heisen.h $(DESTDIR)$(PREFIX)/include/heisen.h
	install -m 755 $(LIBDIR)/libheisen.so $(DESTDIR)$(PREFIX)/lib/libheisen.so.$(VERSION:0.%=$(ABI).%)
	ln -sf libheisen.so.$(VERSION:0.%=$(ABI).%) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libheisen.so
	install -m 644 $(LIBDIR)/libheisen.a $(DESTDIR)$(PREFIX)/lib/libheisen.a
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' heisen.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/heisen.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/include/heisen.h $(DESTDIR)$(PREFIX)/lib/libheisen.so* \
	    $(DESTDIR)$(PREFIX)/lib/libheisen.a $(DESTDIR)$(PREFIX)/lib/pkgconfig/heisen.pc

clean: examples-c-clean
	$(CARGO) clean
	rm -rf build
