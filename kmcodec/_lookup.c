/* kmcodec._lookup: labels of one byte each to pixels, through a table of 256 rows.

   The last step of a decode: pixel i is row labels[i] of the table, `item` bytes
   (the channels, 1 to 8). numpy's take has no fast path for rows of 3 bytes, so it
   costs several ns a pixel; this loop costs about one, and runs without the GIL so
   that kmcodec/lookup.py can split a large image over threads. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static void look_up(const uint8_t *table, int item, const uint8_t *labels, size_t n, uint8_t *out)
{
    if (item == 1) {
        for (size_t i = 0; i < n; i++)
            out[i] = table[labels[i]];
    } else if (item == 3 || item == 4) {
        /* Rows as 4-byte words: one load and one store a pixel. For 3 bytes the store's
           fourth byte lands on the next pixel, which overwrites it; the last pixel is
           stored as 3 bytes, so nothing is written past the output. */
        uint32_t words[256] = {0};
        for (int r = 0; r < 256; r++)
            memcpy(&words[r], table + (size_t)r * item, (size_t)item);
        size_t i = 0;
        if (n > 0) {
            for (; i + 1 < n; i++)
                memcpy(out + i * item, &words[labels[i]], 4);
            memcpy(out + i * item, &words[labels[i]], (size_t)item);
        }
    } else {
        for (size_t i = 0; i < n; i++)
            memcpy(out + i * item, table + (size_t)labels[i] * item, (size_t)item);
    }
}

static PyObject *lookup(PyObject *self, PyObject *args)
{
    Py_buffer table, labels, out;
    int item;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*iy*w*:lookup", &table, &item, &labels, &out))
        return NULL;
    if (item < 1 || item > 8)
        PyErr_Format(PyExc_ValueError, "lookup: item must be 1..8 bytes, got %d", item);
    else if (table.len != 256 * (Py_ssize_t)item)
        PyErr_Format(PyExc_ValueError, "lookup: table must be 256 x %d = %zd bytes, got %zd", item, 256 * (Py_ssize_t)item, table.len);
    else if (out.len != labels.len * item)
        PyErr_Format(PyExc_ValueError, "lookup: out must be %zd x %d = %zd bytes, got %zd", labels.len, item, labels.len * item, out.len);
    else {
        Py_BEGIN_ALLOW_THREADS
        look_up(table.buf, item, labels.buf, (size_t)labels.len, out.buf);
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&table);
    PyBuffer_Release(&labels);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"lookup", lookup, METH_VARARGS, "lookup(table, item, labels, out): out[i] = row labels[i] of table (256 rows of item bytes)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "kmcodec._lookup", "Labels to pixels through a 256-row table, without the GIL.", -1, methods};

PyMODINIT_FUNC PyInit__lookup(void)
{
    return PyModule_Create(&module);
}
