/*
 * standalone.c: a main() for fuzz targets built without libFuzzer (the
 * ordinary gcc build that `make check` uses).  It calls
 * LLVMFuzzerInitialize once, then runs every file named on the command
 * line, and every regular file inside each directory named, through
 * LLVMFuzzerTestOneInput, so the seed corpora replay under whatever
 * sanitizers the build has.  Arguments starting with '-' are libFuzzer
 * flags and are ignored, so one command line serves both kinds of build.
 *
 * It does not fuzz: no mutation, no coverage.  Exit status 0 when every
 * input ran (a crash aborts the process), 1 when an input could not be
 * read.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Run one file; returns 0, or -1 when it cannot be read. */
static int
standalone_run_file(const char *path)
{
	FILE		*fp;
	struct stat	 st;
	uint8_t		*buf = NULL;
	size_t		 n;
	int		 rc = -1;

	if ((fp = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) < 0 || st.st_size < 0) {
		fprintf(stderr, "%s: %s\n", path, strerror(errno));
		goto out;
	}
	/* Exactly the file's size, so reads past the end trip ASan. */
	buf = fuzz_malloc((size_t)st.st_size);
	n = fread(buf, 1, (size_t)st.st_size, fp);
	if (n != (size_t)st.st_size || ferror(fp)) {
		fprintf(stderr, "%s: short read\n", path);
		goto out;
	}
	LLVMFuzzerTestOneInput(buf, n);
	rc = 0;
out:
	free(buf);
	fclose(fp);
	return rc;
}

static int
standalone_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file of a directory, in name order. */
static int
standalone_run_dir(const char *dir, int *count)
{
	DIR		*d;
	struct dirent	*e;
	struct stat	 st;
	char		**names = NULL, path[4096];
	size_t		 n = 0, cap = 0, i;
	int		 rc = 0;

	if ((d = opendir(dir)) == NULL) {
		fprintf(stderr, "%s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((names = realloc(names, cap * sizeof(*names))) == NULL)
				abort();
		}
		if ((names[n++] = strdup(e->d_name)) == NULL)
			abort();
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof(*names), standalone_cmp);
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			if (standalone_run_file(path) < 0)
				rc = -1;
			else
				(*count)++;
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int
main(int argc, char **argv)
{
	struct stat	st;
	int		i, count = 0, rc = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	for (i = 1; i < argc; i++) {
		if (argv[i][0] == '-')
			continue;
		if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
			if (standalone_run_dir(argv[i], &count) < 0)
				rc = 1;
		} else if (standalone_run_file(argv[i]) < 0)
			rc = 1;
		else
			count++;
	}
	fprintf(stderr, "%s: ran %d inputs\n", argv[0], count);
	return rc;
}
