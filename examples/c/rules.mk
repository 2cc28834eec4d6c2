# examples/c/rules.mk -- the C example programs; included by the top-level Makefile.
#
#   build/bin/heisen-httpd   HTTP/1.1 front for FastCGI backends (issue 5 §1)
#   build/bin/heisen-fcgi    FastCGI one-shot client and load generator (issue 5 §2)
#   build/bin/heisen-story   the story replay: two writes and a close, zero 502s
#   build/bin/heisen-http-parse-test   unit test of the HTTP parser (no library needed)
#   build/bin/heisen-http-parse-fuzz   (make examples-c-fuzz) fuzz driver of the parser, ASan+UBSan;
#                                      with clang, examples-c-libfuzzer builds a libFuzzer binary
#
# They use only include/heisen.h and libheisen.so (built by cargo before these rules run).
# Plain C99, warning-free under -Wall -Wextra -Werror.

EXAMPLES_C_CC      ?= cc
EXAMPLES_C_CFLAGS  := -std=c99 -Wall -Wextra -Werror -O2 -g -Iinclude -pthread
EXAMPLES_C_LDLIBS  := -Ltarget/release -lheisen -Wl,-rpath,$(abspath target/release) -pthread
EXAMPLES_C_DEPS    := include/heisen.h examples/c/common.h $(wildcard target/release/libheisen.so)
EXAMPLES_C_BINS    := build/bin/heisen-httpd build/bin/heisen-fcgi build/bin/heisen-story

.PHONY: examples-c examples-c-clean examples-c-fuzz examples-c-libfuzzer

# Inside the top-level Makefile (which defines SONAME and a `lib` target), link only after the
# library exists, also under make -j.
ifdef SONAME
$(EXAMPLES_C_BINS): | lib
endif
examples-c: $(EXAMPLES_C_BINS) build/bin/heisen-http-parse-test

build/bin/heisen-httpd: examples/c/heisen-httpd.c examples/c/http_parse.c examples/c/http_parse.h $(EXAMPLES_C_DEPS)
	@mkdir -p $(@D)
	$(EXAMPLES_C_CC) $(EXAMPLES_C_CFLAGS) -o $@ examples/c/heisen-httpd.c examples/c/http_parse.c $(EXAMPLES_C_LDLIBS)

build/bin/heisen-fcgi: examples/c/heisen-fcgi.c $(EXAMPLES_C_DEPS)
	@mkdir -p $(@D)
	$(EXAMPLES_C_CC) $(EXAMPLES_C_CFLAGS) -o $@ examples/c/heisen-fcgi.c $(EXAMPLES_C_LDLIBS)

build/bin/heisen-story: examples/c/heisen-story.c $(EXAMPLES_C_DEPS)
	@mkdir -p $(@D)
	$(EXAMPLES_C_CC) $(EXAMPLES_C_CFLAGS) -o $@ examples/c/heisen-story.c $(EXAMPLES_C_LDLIBS)

build/bin/heisen-http-parse-test: tests/programs/http_parse_test.c examples/c/http_parse.c examples/c/http_parse.h
	@mkdir -p $(@D)
	$(EXAMPLES_C_CC) $(EXAMPLES_C_CFLAGS) -Iexamples/c -o $@ tests/programs/http_parse_test.c examples/c/http_parse.c

examples-c-fuzz: build/bin/heisen-http-parse-fuzz
build/bin/heisen-http-parse-fuzz: tests/programs/http_parse_fuzz.c examples/c/http_parse.c examples/c/http_parse.h
	@mkdir -p $(@D)
	$(EXAMPLES_C_CC) -std=c99 -Wall -Wextra -Werror -DSTANDALONE -g -O1 -fsanitize=address,undefined \
	    -fno-sanitize-recover=undefined -Iexamples/c -o $@ tests/programs/http_parse_fuzz.c examples/c/http_parse.c

examples-c-libfuzzer:
	@mkdir -p build/bin
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Iexamples/c -o build/bin/heisen-http-parse-libfuzzer \
	    tests/programs/http_parse_fuzz.c examples/c/http_parse.c

examples-c-clean:
	rm -f $(EXAMPLES_C_BINS) build/bin/heisen-http-parse-test build/bin/heisen-http-parse-fuzz \
	    build/bin/heisen-http-parse-libfuzzer
